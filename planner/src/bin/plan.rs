//! `zhengyun-plan`: plans a consolidation from the CSV inventory a cloud office fills in
//! offline (planner/src/inventory.rs and planner/src/showback.rs describe the columns) and
//! writes the report as Markdown, JSON or a self-contained HTML page.

#![forbid(unsafe_code)]

use zhengyun_planner::inventory::{self, InputError};
use zhengyun_planner::report::{self, Input, Report};
use zhengyun_planner::{Options, pack, plan, showback};

const USAGE: &str = "usage: zhengyun-plan [OPTIONS] NODES.csv SYSTEMS.csv [HEADROOM]

  NODES.csv may end with a price_per_month column: a zone whose every node has a price is
  planned for least cost instead of fewest nodes, and the report gives the cost and its bound.

  --headroom H        the share of each node that may be used, 0.05 to 1 (default 0.7: 30% kept free);
                      the third positional argument says the same
  --format F          markdown (default), json or html
  -o, --output FILE   write the report to FILE instead of standard output
  --servers FILE      the old servers' capacity, for utilisation before the move
                      (room,server,cpu_cores,memory_gib,disk_gib,gpus)
  --prices FILE       monthly prices (resource,unit,price_per_month: cpu per core, memory and disk
                      per GiB, gpu per GPU); without it the report shows quantities, never money
  --quotas FILE       each department's quota (department,cpu_cores,memory_gib,disk_gib,gpus),
                      shown beside what its systems request
  --check             exit 4 when the plan leaves any replica unplaced (the report is written
                      first; standard error says which departments and, where the demand
                      exceeds the nodes, which resource and by how much)
  -h, --help          this text
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Markdown,
    Json,
    Html,
}

#[derive(Debug, Default)]
struct Args {
    positional: Vec<String>,
    headroom: Option<String>,
    format: Option<String>,
    output: Option<String>,
    servers: Option<String>,
    prices: Option<String>,
    quotas: Option<String>,
    check: bool,
}

fn usage_error(msg: &str) -> ! {
    eprintln!("zhengyun-plan: {msg}\n\n{USAGE}");
    std::process::exit(2)
}

fn parse_args(raw: impl Iterator<Item = String>) -> Args {
    let mut a = Args::default();
    let mut raw = raw.peekable();
    while let Some(arg) = raw.next() {
        if arg == "-h" || arg == "--help" {
            print!("{USAGE}");
            std::process::exit(0);
        }
        if arg == "--check" {
            a.check = true;
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let slot = match flag.as_str() {
            "--headroom" => &mut a.headroom,
            "--format" => &mut a.format,
            "-o" | "--output" => &mut a.output,
            "--servers" => &mut a.servers,
            "--prices" => &mut a.prices,
            "--quotas" => &mut a.quotas,
            f if f.starts_with('-') && f.len() > 1 && f.parse::<f64>().is_err() => {
                usage_error(&format!("unknown option {f}"))
            }
            _ => {
                a.positional.push(arg);
                continue;
            }
        };
        let value = inline.or_else(|| raw.next()).unwrap_or_else(|| usage_error(&format!("{flag} needs a value")));
        if slot.replace(value).is_some() {
            usage_error(&format!("{flag} given twice"));
        }
    }
    a
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| {
        eprintln!("{path}: {e}");
        std::process::exit(1)
    })
}

fn or_exit<T>(r: Result<T, InputError>) -> T {
    r.unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    })
}

fn main() {
    let a = parse_args(std::env::args().skip(1));
    let (nodes_path, systems_path) = match a.positional.as_slice() {
        [n, s] | [n, s, _] => (n.as_str(), s.as_str()),
        _ => usage_error("expected NODES.csv SYSTEMS.csv [HEADROOM]"),
    };
    let headroom = match (a.headroom.as_deref(), a.positional.get(2).map(String::as_str)) {
        (Some(f), Some(p)) if f != p => usage_error(&format!("headroom given twice ({f} and {p})")),
        (Some(h), _) | (None, Some(h)) => {
            h.parse::<f64>().unwrap_or_else(|_| usage_error(&format!("headroom '{h}' is not a number")))
        }
        (None, None) => 0.7,
    };
    if !(0.05..=1.0).contains(&headroom) {
        usage_error("the headroom must be between 0.05 and 1 (the share of each node that may be used)");
    }
    let format = match a.format.as_deref().unwrap_or("markdown") {
        "markdown" | "md" => Format::Markdown,
        "json" => Format::Json,
        "html" => Format::Html,
        f => usage_error(&format!("format '{f}' must be markdown, json or html")),
    };

    let nodes = or_exit(inventory::nodes(nodes_path, &read(nodes_path)));
    let (systems, origins) = or_exit(inventory::systems(systems_path, &read(systems_path)));
    let servers = a.servers.as_deref().map(|p| {
        let s = or_exit(inventory::servers(p, &read(p)));
        or_exit(inventory::check_servers(p, &s, &origins));
        s
    });
    let prices = a.prices.as_deref().map(|p| or_exit(showback::prices(p, &read(p))));
    let quotas = a.quotas.as_deref().map(|p| or_exit(showback::quotas(p, &read(p))));

    let options = Options { headroom };
    let p = plan(&nodes, &systems, &options);
    if let Err(e) = pack::check(&nodes, &systems, &options, &p) {
        eprintln!("internal error, the plan does not hold: {e}");
        std::process::exit(3);
    }
    let input = Input {
        nodes: &nodes,
        systems: &systems,
        origins: &origins,
        options,
        servers: servers.as_deref(),
        prices: prices.as_ref(),
        quotas: quotas.as_deref(),
    };
    let r = Report::new(&input, &p);
    let text = match format {
        Format::Markdown => report::markdown(&r),
        Format::Json => r.to_json(),
        Format::Html => report::html(&r),
    };
    match a.output {
        Some(path) => {
            if let Err(e) = std::fs::write(&path, text) {
                eprintln!("{path}: {e}");
                std::process::exit(1);
            }
        }
        None => print!("{text}"),
    }
    if a.check && !p.unplaced.is_empty() {
        let by: Vec<String> =
            r.unplaced_by_department.iter().map(|d| format!("{} {}", d.department, d.replicas)).collect();
        eprintln!("zhengyun-plan: {} replicas unplaced (by department: {})", p.unplaced.len(), by.join(", "));
        for s in pack::shortfall(&nodes, &systems, &options) {
            eprintln!("zhengyun-plan: {s}");
        }
        std::process::exit(4);
    }
}
