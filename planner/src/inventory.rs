//! The inventory a cloud office fills in offline, as two CSV files (docs/performance.md and
//! docs/examples/consolidation/ show them), and the summary of a plan over it.
//!
//! `nodes.csv`: `name,zone,arch,cpu_cores,memory_gib,disk_gib,gpus` — the shared nodes —
//! optionally followed by `price_per_month` (what the node costs a month; an empty cell: not
//! priced). A zone whose every node has a price is planned for least cost, not fewest nodes.
//! `systems.csv`: `name,department,room,server,zone,arch,cpu_cores,memory_gib,disk_gib,gpus,replicas`
//! — each system of each old server, per replica; `arch` is `amd64`, `arm64` or `any`; `gpus`
//! may be fractional (a share of one GPU).
//! `servers.csv` (optional): `room,server,cpu_cores,memory_gib,disk_gib,gpus` — the old servers'
//! own capacity, for utilisation before the move; a server with no system is idle (retirable).
//!
//! Every reader takes the name of the file it reads, so an error names the file as the user
//! gave it, then the line and the column (`systems.csv:12: arch 'sparc' must be ...`).

#![allow(clippy::needless_range_loop)] // resources are fixed-size vectors: loops over the dimension read as the arithmetic does

use crate::{Arch, Node, Res, System};

/// Where each system came from: its computer room and old server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub room: String,
    pub server: String,
}

/// A line that does not read, named by file, line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError(pub String);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

/// The lines of a CSV file after its header: each line's number and its fields.
pub(crate) type Rows<'a> = Vec<(usize, Vec<&'a str>)>;

pub(crate) fn rows<'a>(file: &'a str, text: &'a str, header: &[&str]) -> Result<Rows<'a>, InputError> {
    Ok(rows_optional(file, text, header, &[])?.1)
}

/// As [`rows`], where the header may go on with the first columns of `optional`, in that order:
/// returns how many of them it has, and rows of that many more fields.
pub(crate) fn rows_optional<'a>(
    file: &'a str,
    text: &'a str,
    header: &[&str],
    optional: &[&str],
) -> Result<(usize, Rows<'a>), InputError> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    let Some((_, head)) = lines.next() else { return Err(InputError(format!("{file}: empty"))) };
    let got: Vec<&str> = head.split(',').map(str::trim).collect();
    let extra = got.len().saturating_sub(header.len());
    if got[..got.len().min(header.len())] != *header
        || extra > optional.len()
        || got[header.len()..] != optional[..extra]
    {
        let optional = match optional {
            [] => String::new(),
            o => format!(" (optionally followed by ,{})", o.join(",")),
        };
        return Err(InputError(format!(
            "{file}: the header must be {}{optional}, not {}",
            header.join(","),
            got.join(",")
        )));
    }
    let width = header.len() + extra;
    let rows = lines
        .map(|(i, l)| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            if f.len() != width {
                return Err(InputError(format!("{file}:{}: {} fields, expected {width}", i + 1, f.len())));
            }
            Ok((i + 1, f))
        })
        .collect::<Result<_, _>>()?;
    Ok((extra, rows))
}

pub(crate) fn number(file: &str, line: usize, column: &str, v: &str, max: f64) -> Result<f64, InputError> {
    let x: f64 = v.parse().map_err(|_| InputError(format!("{file}:{line}: {column} '{v}' is not a number")))?;
    if !x.is_finite() || x < 0.0 || x > max {
        return Err(InputError(format!("{file}:{line}: {column} {v} is out of range (0 to {max})")));
    }
    Ok(x)
}

fn arch(file: &str, line: usize, v: &str, any: bool) -> Result<Option<Arch>, InputError> {
    match v {
        "amd64" => Ok(Some(Arch::Amd64)),
        "arm64" => Ok(Some(Arch::Arm64)),
        "any" if any => Ok(None),
        _ => Err(InputError(format!(
            "{file}:{line}: arch '{v}' must be amd64 or arm64{}",
            if any { " or any" } else { "" }
        ))),
    }
}

pub const NODE_HEADER: [&str; 7] = ["name", "zone", "arch", "cpu_cores", "memory_gib", "disk_gib", "gpus"];
/// The optional columns of `nodes.csv`, after [`NODE_HEADER`]: what the node costs a month.
pub const NODE_OPTIONAL: [&str; 1] = ["price_per_month"];
pub const SYSTEM_HEADER: [&str; 11] =
    ["name", "department", "room", "server", "zone", "arch", "cpu_cores", "memory_gib", "disk_gib", "gpus", "replicas"];

/// Reads `nodes.csv`. Sizes above 4,096 cores, 64 TiB of memory, 1 PiB of disk or 64 GPUs are
/// refused as typos. The header decides whether there is a `price_per_month` column; a price is
/// a number from 0 to 10⁹ (in the file's currency), and an empty cell leaves the node unpriced.
pub fn nodes(f: &str, text: &str) -> Result<Vec<Node>, InputError> {
    let (priced, rows) = rows_optional(f, text, &NODE_HEADER, &NODE_OPTIONAL)?;
    rows.into_iter()
        .map(|(line, r)| {
            let n = |c: usize, max: f64| number(f, line, NODE_HEADER[c], r[c], max);
            let gpus = n(6, 64.0)?;
            if gpus.fract() != 0.0 {
                return Err(InputError(format!(
                    "{f}:{line}: gpus '{}' must be a whole number of devices (a system may ask for a share of one)",
                    r[6]
                )));
            }
            Ok(Node {
                name: r[0].to_string(),
                zone: r[1].to_string(),
                arch: arch(f, line, r[2], false)?.unwrap_or(Arch::Amd64),
                capacity: [
                    (n(3, 4096.0)? * 1000.0) as u64,
                    (n(4, 65536.0)? * 1024.0) as u64,
                    n(5, 1_048_576.0)? as u64,
                    gpus as u64 * crate::DEVICE,
                ],
                gpu_model: None,
                price: match r.get(NODE_HEADER.len()) {
                    Some(v) if priced > 0 && !v.is_empty() => Some(number(f, line, NODE_OPTIONAL[0], v, 1e9)?),
                    _ => None,
                },
            })
        })
        .collect()
}

/// Reads `systems.csv`, with where each system runs today.
pub fn systems(f: &str, text: &str) -> Result<(Vec<System>, Vec<Origin>), InputError> {
    let mut out = (Vec::new(), Vec::new());
    for (line, r) in rows(f, text, &SYSTEM_HEADER)? {
        let n = |c: usize, max: f64| number(f, line, SYSTEM_HEADER[c], r[c], max);
        let replicas = n(10, 100.0)?;
        let gpus = n(9, 64.0)?;
        let thousandths = (gpus * 1000.0).round();
        if (gpus > 1.0 && gpus.fract() != 0.0) || (gpus > 0.0 && gpus < 1.0 && !(1.0..1000.0).contains(&thousandths)) {
            return Err(InputError(format!(
                "{f}:{line}: gpus '{}' must be a share of one device (0.001 to 0.999) or a whole number of devices",
                r[9]
            )));
        }
        if replicas < 1.0 || replicas.fract() != 0.0 {
            return Err(InputError(format!("{f}:{line}: replicas '{}' must be a whole number from 1 to 100", r[10])));
        }
        out.0.push(System {
            name: r[0].to_string(),
            department: r[1].to_string(),
            zone: r[4].to_string(),
            arch: arch(f, line, r[5], true)?,
            need: [
                (n(6, 4096.0)? * 1000.0) as u64,
                (n(7, 65536.0)? * 1024.0) as u64,
                n(8, 1_048_576.0)? as u64,
                thousandths as u64,
            ],
            replicas: replicas as u32,
            gpu_models: Vec::new(),
        });
        out.1.push(Origin { room: r[2].to_string(), server: r[3].to_string() });
    }
    Ok(out)
}

pub const SERVER_HEADER: [&str; 6] = ["room", "server", "cpu_cores", "memory_gib", "disk_gib", "gpus"];

/// An old server, with its own capacity (what the department bought).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub room: String,
    pub server: String,
    pub capacity: Res,
}

/// Reads `servers.csv`; a server listed twice is refused. Sizes are bounded as for nodes.
pub fn servers(f: &str, text: &str) -> Result<Vec<Server>, InputError> {
    let mut out: Vec<Server> = Vec::new();
    let mut seen = std::collections::BTreeMap::new();
    for (line, r) in rows(f, text, &SERVER_HEADER)? {
        let n = |c: usize, max: f64| number(f, line, SERVER_HEADER[c], r[c], max);
        if let Some(first) = seen.insert((r[0], r[1]), line) {
            return Err(InputError(format!(
                "{f}:{line}: server '{}' of room '{}' is already on line {first}",
                r[1], r[0]
            )));
        }
        out.push(Server {
            room: r[0].to_string(),
            server: r[1].to_string(),
            capacity: [
                (n(2, 4096.0)? * 1000.0) as u64,
                (n(3, 65536.0)? * 1024.0) as u64,
                n(4, 1_048_576.0)? as u64,
                (n(5, 64.0)? * 1000.0) as u64,
            ],
        });
    }
    Ok(out)
}

/// Every server `systems.csv` names must be in `servers.csv` when one is given: a missing
/// capacity would make the utilisation before the move look higher than it was.
pub fn check_servers(f: &str, servers: &[Server], origins: &[Origin]) -> Result<(), InputError> {
    let known: std::collections::BTreeSet<(&str, &str)> =
        servers.iter().map(|s| (s.room.as_str(), s.server.as_str())).collect();
    match origins.iter().find(|o| !known.contains(&(o.room.as_str(), o.server.as_str()))) {
        Some(o) => Err(InputError(format!(
            "{f}: no line for server '{}' of room '{}' (systems.csv runs systems on it)",
            o.server, o.room
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_names_file_line_and_column() {
        let e = nodes("nodes.csv", "name,zone,arch,cpu_cores,memory_gib,disk_gib,gpus\nn1,intranet,sparc,8,32,100,0\n")
            .unwrap_err();
        assert_eq!(e.0, "nodes.csv:2: arch 'sparc' must be amd64 or arm64");
        let e =
            nodes("nodes.csv", "name,zone,arch,cpu_cores,memory_gib,disk_gib,gpus\nn1,intranet,amd64,-8,32,100,0\n")
                .unwrap_err();
        assert!(e.0.contains("cpu_cores -8 is out of range"), "{e}");
        let e =
            nodes("nodes.csv", "name,zone,arch,cpu_cores,memory_gib,disk_gib,gpus\nn1,intranet,amd64,99999,32,100,0\n")
                .unwrap_err();
        assert!(e.0.contains("out of range"), "{e}");
        let head = SYSTEM_HEADER.join(",");
        let e = systems("systems.csv", &format!("{head}\ns,d,r,srv,intranet,any,1,2,10,0,1.5\n")).unwrap_err();
        assert!(e.0.contains("replicas '1.5' must be a whole number"), "{e}");
        let e = systems("systems.csv", "name,dept\n").unwrap_err();
        assert!(e.0.contains("the header must be"), "{e}");
        let e =
            nodes("/srv/office/pool.csv", "name,zone,arch,cpu_cores,memory_gib,disk_gib,gpus\nn1,x,amd64,8,lots,1,0\n")
                .unwrap_err();
        assert_eq!(e.0, "/srv/office/pool.csv:2: memory_gib 'lots' is not a number");
    }

    #[test]
    fn a_nodes_file_without_prices_reads_as_before() {
        let n = nodes("nodes.csv", "name,zone,arch,cpu_cores,memory_gib,disk_gib,gpus\nn1,intranet,arm64,8,32,100,2\n")
            .unwrap();
        assert_eq!(
            n,
            vec![Node {
                name: "n1".into(),
                zone: "intranet".into(),
                arch: Arch::Arm64,
                capacity: [8000, 32_768, 100, 2000],
                price: None,
                gpu_model: None,
            }]
        );
        let head = "name,zone,arch,cpu_cores,memory_gib,disk_gib,gpus\n";
        let e = nodes("nodes.csv", &format!("{head}n1,intranet,arm64,8,32,100,0.5\n")).unwrap_err();
        assert_eq!(
            e.0,
            "nodes.csv:2: gpus '0.5' must be a whole number of devices (a system may ask for a share of one)"
        );
    }

    #[test]
    fn node_prices_come_from_an_optional_column_and_bad_ones_name_the_line() {
        let head = "name,zone,arch,cpu_cores,memory_gib,disk_gib,gpus,price_per_month";
        let n = nodes(
            "nodes.csv",
            &format!("{head}\nn1,a,amd64,8,32,100,0,1250.5\nn2,a,amd64,8,32,100,0,\nn3,a,amd64,8,32,100,0,0\n"),
        )
        .unwrap();
        assert_eq!(n.iter().map(|n| n.price).collect::<Vec<_>>(), [Some(1250.5), None, Some(0.0)]);
        let e =
            nodes("nodes.csv", &format!("{head}\nn1,a,amd64,8,32,100,0,1\nn2,a,amd64,8,32,100,0,-3\n")).unwrap_err();
        assert_eq!(e.0, "nodes.csv:3: price_per_month -3 is out of range (0 to 1000000000)");
        for bad in ["NaN", "inf", "2e9"] {
            let e = nodes("nodes.csv", &format!("{head}\nn1,a,amd64,8,32,100,0,{bad}\n")).unwrap_err();
            assert_eq!(e.0, format!("nodes.csv:2: price_per_month {bad} is out of range (0 to 1000000000)"));
        }
        let e = nodes("nodes.csv", &format!("{head}\nn1,a,amd64,8,32,100,0,cheap\n")).unwrap_err();
        assert_eq!(e.0, "nodes.csv:2: price_per_month 'cheap' is not a number");
        // A row without the price when the header has the column: the field count is wrong.
        let e = nodes("nodes.csv", &format!("{head}\nn1,a,amd64,8,32,100,0\n")).unwrap_err();
        assert_eq!(e.0, "nodes.csv:2: 7 fields, expected 8");
        let e = nodes("nodes.csv", "name,zone,arch,cpu_cores,memory_gib,disk_gib,gpus,price\n").unwrap_err();
        assert_eq!(
            e.0,
            "nodes.csv: the header must be name,zone,arch,cpu_cores,memory_gib,disk_gib,gpus (optionally followed by \
             ,price_per_month), not name,zone,arch,cpu_cores,memory_gib,disk_gib,gpus,price"
        );
    }

    #[test]
    fn old_servers_are_read_once_each_and_must_cover_the_systems() {
        let head = SERVER_HEADER.join(",");
        let s = servers("servers.csv", &format!("{head}\nr1,srv-1,16,64,1200,0\nr1,srv-2,32,128,2400,0.5\n")).unwrap();
        assert_eq!(s[1].capacity, [32_000, 131_072, 2400, 500]);
        let e = servers("servers.csv", &format!("{head}\nr1,srv-1,16,64,1200,0\nr1,srv-1,8,64,1200,0\n")).unwrap_err();
        assert_eq!(e.0, "servers.csv:3: server 'srv-1' of room 'r1' is already on line 2");
        let e = servers("servers.csv", &format!("{head}\nr1,srv-1,16,-64,1200,0\n")).unwrap_err();
        assert!(e.0.starts_with("servers.csv:2: memory_gib -64 is out of range"), "{e}");
        let origins = [Origin { room: "r1".into(), server: "srv-3".into() }];
        let e = check_servers("servers.csv", &s, &origins).unwrap_err();
        assert!(e.0.contains("no line for server 'srv-3' of room 'r1'"), "{e}");
    }
}
