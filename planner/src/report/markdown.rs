//! The report as Markdown, for the cloud office: the summary first, then rooms, what cannot
//! move, showback, the nodes used and where each system goes. Every name from the input is
//! escaped, so a department called `a|b` or `<b>` cannot break a table or inject markup.

use std::fmt::Write;

use super::{NodeCost, Quantities, Ratios, Report};
use crate::DIMS;

/// Names from the input, escaped for a Markdown table cell: Markdown punctuation gets a
/// backslash, and `<`, `>`, `&` become entities (renderers pass raw HTML through).
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\\' | '|' | '`' | '*' | '_' | '[' | ']' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Thousands separated by commas: `303727.39` reads `303,727.39`.
fn grouped(s: &str) -> String {
    let (sign, s) = s.strip_prefix('-').map_or(("", s), |r| ("-", r));
    let (int, frac) = s.split_once('.').map_or((s, None), |(i, f)| (i, Some(f)));
    let mut out = String::from(sign);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    out
}

/// A quantity with at most two decimals, trailing zeros dropped, thousands grouped.
pub(crate) fn num(x: f64) -> String {
    let s = format!("{x:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".to_string() } else { grouped(s) }
}

pub(crate) fn pct(r: Option<f64>) -> String {
    r.map_or_else(|| "–".to_string(), |r| format!("{:.0}%", r * 100.0))
}

/// An amount of money: two decimals, thousands grouped, no currency (the prices file has none).
pub(crate) fn money(x: f64) -> String {
    grouped(&format!("{x:.2}"))
}

pub(crate) const UNITS: [&str; DIMS] = ["cores", "GiB", "GiB", "GPUs"];
pub(crate) const LABELS: [&str; DIMS] = ["cpu", "memory", "disk", "gpu"];

fn cells(q: &Quantities) -> String {
    (0..DIMS).map(|d| num(q.get(d))).collect::<Vec<_>>().join(" | ")
}

fn used(req: &Quantities, cap: &Quantities, ratio: &Ratios, d: usize) -> String {
    format!("{} / {} {} ({})", num(req.get(d)), num(cap.get(d)), UNITS[d], pct(ratio.get(d)))
}

/// The report as Markdown.
pub fn markdown(r: &Report) -> String {
    let mut o = String::from("# Consolidation plan (集约化)\n\n");
    let s = &r.summary;
    let _ = write!(
        o,
        "{} systems ({} replicas) from {} servers in {} rooms go onto **{} of {} shared nodes** (headroom {:.0}%: no node \
         is planned above that share of its cpu, memory or disk; GPUs go by whole device or a share of one)",
        s.systems,
        s.replicas,
        s.servers,
        s.rooms,
        s.nodes_used,
        s.nodes_available,
        r.headroom * 100.0
    );
    if s.replicas_unplaced > 0 {
        let n = s.replicas_unplaced;
        let _ = write!(o, "; {n} {} could not be placed (below)", if n == 1 { "replica" } else { "replicas" });
    }
    let _ = writeln!(o, ".\n");
    let _ = writeln!(
        o,
        "**{} of {} old servers can be retired; {} of {} rooms entirely.**\n",
        s.servers_retirable, s.servers, s.rooms_retirable, s.rooms
    );
    let b = &r.lower_bound;
    match b.gap_percent {
        Some(g) => {
            let _ = writeln!(
                o,
                "Lower bound: **{} nodes**; this plan is at most {g:.1}% above the fewest possible.",
                b.nodes
            );
        }
        None if !b.plan_complete => {
            let _ = writeln!(
                o,
                "Lower bound: {} nodes. No gap is stated: the bound is about plans that place every replica, and this one \
                 leaves {} unplaced.",
                b.nodes, s.replicas_unplaced
            );
        }
        None => {
            let _ = writeln!(o, "Lower bound: {} nodes.", b.nodes);
        }
    }
    let _ = writeln!(o, "The bound ({}): {}\n", b.name, b.statement);
    if let Some(c) = &r.node_cost {
        node_cost(&mut o, c, s.replicas_unplaced);
    }
    match &r.node_cost {
        None => {
            o += "| zone | nodes available | nodes used | lower bound |\n|---|---|---|---|\n";
            for z in &b.zones {
                let _ =
                    writeln!(o, "| {} | {} | {} | {} |", esc(&z.zone), z.nodes_available, z.nodes_used, z.lower_bound);
            }
        }
        Some(c) => {
            o += "| zone | nodes available | nodes used | lower bound | planned for | monthly cost | cost bound |\n\
                  |---|---|---|---|---|---|---|\n";
            for (z, zc) in b.zones.iter().zip(&c.zones) {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    esc(&z.zone),
                    z.nodes_available,
                    z.nodes_used,
                    z.lower_bound,
                    if zc.least_cost { "least cost" } else { "fewest nodes" },
                    zc.monthly.map_or_else(|| "–".to_string(), money),
                    zc.lower_bound.map_or_else(|| "–".to_string(), money)
                );
            }
        }
    }

    o += "\n## Utilisation\n\n| resource | before: needed / old servers' capacity | after: placed / capacity of the nodes used |\n|---|---|---|\n";
    let u = &r.utilisation;
    for d in 0..DIMS {
        let before = u
            .before
            .as_ref()
            .map_or_else(|| "not known (no servers.csv)".to_string(), |b| used(&b.requested, &b.capacity, &b.ratio, d));
        let _ = writeln!(
            o,
            "| {} | {before} | {} |",
            LABELS[d],
            used(&u.after.requested, &u.after.capacity, &u.after.ratio, d)
        );
    }
    o += "\nBefore counts every system on its old server (needs × replicas); after, the replicas placed.\n";

    o += "\n## Rooms\n\n| room | departments | servers | can be retired | what stays, and why |\n|---|---|---|---|---|\n";
    for room in &r.rooms {
        let stays: Vec<String> = room
            .servers_detail
            .iter()
            .filter(|s| !s.retirable)
            .map(|s| {
                let why: Vec<String> = s
                    .blocked_by
                    .iter()
                    .map(|b| format!("{} replica {}: {}", esc(&b.system), b.replica, esc(&b.reason)))
                    .collect();
                format!("{} ({})", esc(&s.server), why.join("; "))
            })
            .collect();
        let _ = writeln!(
            o,
            "| {} | {} | {} | {}{} | {} |",
            esc(&room.room),
            room.departments.iter().map(|d| esc(d)).collect::<Vec<_>>().join(", "),
            room.servers,
            room.servers_retirable,
            if room.retirable { " (the whole room)" } else { "" },
            stays.join("<br>")
        );
    }

    if !r.unplaced.is_empty() {
        o += "\n## Not placed\n\n| system | department | room / server | replica | why |\n|---|---|---|---|---|\n";
        for p in &r.unplaced {
            let _ = writeln!(
                o,
                "| {} | {} | {} / {} | {} | {} |",
                esc(&p.system),
                esc(&p.department),
                esc(&p.room),
                esc(&p.server),
                p.replica,
                esc(&p.reason)
            );
        }
        o += "\nUnplaced replicas by department: ";
        let by: Vec<String> =
            r.unplaced_by_department.iter().map(|d| format!("{} {}", esc(&d.department), d.replicas)).collect();
        o += &by.join(", ");
        o += ".\n";
    }
    if !r.shortfall.is_empty() {
        o += "\n## Demand the nodes cannot hold\n\nNo plan places every replica:\n\n\
              | zone | replicas | resource | asked | the nodes they may use have | short by |\n|---|---|---|---|---|---|\n";
        for s in &r.shortfall {
            let _ = writeln!(o, "| {} |", s.cells().map(|c| esc(&c)).join(" | "));
        }
    }

    showback(&mut o, r);

    o += "\n## Nodes used\n\n| node | zone | arch | replicas | cpu | memory | disk | gpu |\n|---|---|---|---|---|---|---|---|\n";
    for n in &r.nodes_used {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} |",
            esc(&n.node),
            esc(&n.zone),
            n.arch,
            n.replicas,
            (0..DIMS).map(|d| pct(n.ratio.get(d))).collect::<Vec<_>>().join(" | ")
        );
    }

    o += "\n## Where each system goes\n\n| system | department | from (room / server) | nodes |\n|---|---|---|---|\n";
    for sys in &r.systems {
        let to: Vec<String> =
            sys.replicas.iter().map(|p| p.node.as_deref().map_or_else(|| "(not placed)".to_string(), esc)).collect();
        let _ = writeln!(
            o,
            "| {} | {} | {} / {} | {} |",
            esc(&sys.system),
            esc(&sys.department),
            esc(&sys.room),
            esc(&sys.server),
            to.join(", ")
        );
    }
    o
}

/// The paragraph on what the nodes used cost (only when `nodes.csv` has prices).
fn node_cost(o: &mut String, c: &NodeCost, unplaced: usize) {
    *o += "Node prices (from nodes.csv, in its currency): ";
    match c.monthly {
        Some(m) => {
            let _ = write!(o, "the nodes used cost **{} a month**", money(m));
        }
        None => *o += "some node used has no price, so what the nodes used cost is not known",
    }
    match (c.lower_bound, c.gap_percent) {
        (Some(b), Some(g)) => {
            let _ = write!(
                o,
                "; no plan costs less than **{}**, so this one is at most {g:.1}% above the cheapest possible.",
                money(b)
            );
        }
        (Some(b), None) if unplaced > 0 => {
            let _ = write!(o, "; cost bound {} (no gap is stated: this plan leaves {unplaced} unplaced).", money(b));
        }
        (Some(b), None) => {
            let _ = write!(o, "; cost bound {}.", money(b));
        }
        (None, _) => *o += ".",
    }
    if c.nodes_priced < c.nodes_available {
        let _ = write!(o, " {} of {} nodes have a price.", c.nodes_priced, c.nodes_available);
    }
    let _ = writeln!(o, "\n\nThe cost bound ({}): {}\n", c.name, c.statement);
}

fn showback(o: &mut String, r: &Report) {
    let sb = &r.showback;
    let quotas = sb.departments.iter().any(|d| d.quota.is_some());
    *o += "\n## Showback (以租代建)\n\nRequested: each system's needs × its replicas, placed or not";
    if quotas {
        *o += "; a cell reads requested / quota, **over** where the quota is exceeded";
    }
    *o += ".";
    if let Some(prices) = &sb.prices {
        let p: Vec<String> =
            prices.iter().map(|p| format!("{} {} per {}", p.resource, money(p.price_per_month), p.unit)).collect();
        let _ = write!(o, " Monthly prices (from the prices file, in its currency): {}.", p.join(", "));
        if !sb.unpriced.is_empty() {
            let _ = write!(o, " Not priced, so not in the cost: {}.", sb.unpriced.join(", "));
        }
    }
    *o += "\n\n| department | systems | replicas | cpu cores | memory GiB | disk GiB | GPUs |";
    let cost = sb.prices.is_some();
    if cost {
        *o += " monthly cost |";
    }
    *o += "\n|---|---|---|---|---|---|---|";
    if cost {
        *o += "---|";
    }
    *o += "\n";
    for d in &sb.departments {
        let req: Vec<String> = (0..DIMS)
            .map(|k| match &d.quota {
                Some(q) => {
                    let over = d.over_quota.contains(&LABELS[k]);
                    format!("{} / {}{}", num(d.requested.get(k)), num(q.get(k)), if over { " **over**" } else { "" })
                }
                None => num(d.requested.get(k)),
            })
            .collect();
        let _ = write!(o, "| {} | {} | {} | {} |", esc(&d.department), d.systems, d.replicas, req.join(" | "));
        if let Some(c) = &d.monthly_cost {
            let _ = write!(o, " {} |", money(c.total));
        }
        *o += "\n";
    }
    let _ = write!(
        o,
        "| **total** | {} | {} | {} |",
        sb.departments.iter().map(|d| d.systems).sum::<usize>(),
        sb.departments.iter().map(|d| d.replicas).sum::<usize>(),
        cells(&sb.total.requested)
    );
    if let Some(c) = &sb.total.monthly_cost {
        let _ = write!(o, " **{}** |", money(c.total));
    }
    *o += "\n\nPer room:\n\n| room | departments | systems | replicas | cpu cores | memory GiB | disk GiB | GPUs |\n|---|---|---|---|---|---|---|---|\n";
    for room in &sb.rooms {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} |",
            esc(&room.room),
            room.departments.iter().map(|d| esc(d)).collect::<Vec<_>>().join(", "),
            room.systems,
            room.replicas,
            cells(&room.requested)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_an_office_writes_them() {
        assert_eq!(
            (num(2252.8), num(133_835.0), num(0.25), num(16.0), num(0.0)),
            ("2,252.8".into(), "133,835".into(), "0.25".into(), "16".into(), "0".into())
        );
        assert_eq!(
            (money(303_727.391), money(1025.2), money(0.0), money(-1234.5)),
            ("303,727.39".into(), "1,025.20".into(), "0.00".into(), "-1,234.50".into())
        );
        assert_eq!(esc("a|b <i>x</i> & _y_"), "a\\|b &lt;i&gt;x&lt;/i&gt; &amp; \\_y\\_");
    }
}
