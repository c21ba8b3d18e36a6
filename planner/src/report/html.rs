//! The report as one self-contained HTML page: inline CSS and SVG charts drawn here, no script,
//! no external font, image or stylesheet, so the page can be mailed or archived as it is.
//! Every string from the input goes through [`esc`] (text and attributes alike): a department
//! named `<script>…` is shown, never run.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::markdown::{LABELS, UNITS, money, num, pct};
use super::{Quantities, Report};
use crate::DIMS;

/// Escapes text for HTML element content and quoted attribute values alike.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = r#"
:root { --ink: #1f2933; --muted: #616e7c; --line: #d9e2ec; --before: #9aa5b1; --after: #2f6fde; --bad: #c62828; --ok: #2e7d32; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px 48px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "Noto Sans", "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", sans-serif; color: var(--ink); background: #f7f9fb; }
main { max-width: 1240px; margin: 0 auto; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 32px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
p.lead, p.note { color: var(--muted); margin: 4px 0 12px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 12px; margin-top: 16px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 12px 14px; }
.card .v { font-size: 22px; font-weight: 600; white-space: nowrap; }
.card .k { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; width: 100%; background: #fff; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; white-space: nowrap; }
td.why { white-space: normal; }
th { background: #eef2f6; font-weight: 600; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
td.over { color: var(--bad); font-weight: 600; }
tr.total td { font-weight: 600; background: #f3f6f9; }
.yes { color: var(--ok); } .no { color: var(--bad); }
svg { background: #fff; border: 1px solid var(--line); border-radius: 6px; max-width: 100%; height: auto; }
svg text { font: 11px system-ui, -apple-system, "Segoe UI", "Noto Sans", sans-serif; fill: var(--ink); }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; margin: 6px 0 10px; font-size: 12px; color: var(--muted); }
.legend span.sw { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px; vertical-align: -1px; }
details summary { cursor: pointer; font-weight: 600; margin: 8px 0; }
footer { margin-top: 32px; color: var(--muted); font-size: 12px; }
"#;

/// A department's colour: hues a golden angle apart, so neighbours differ.
fn colour(i: usize) -> String {
    format!("hsl({:.0}, 62%, 52%)", (i as f64 * 137.508) % 360.0)
}

/// The report as a self-contained HTML page.
pub fn html(r: &Report) -> String {
    let mut o = String::new();
    o += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
    o += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
    o += "<title>Consolidation plan (集约化)</title>\n<style>";
    o += CSS;
    o += "</style>\n</head>\n<body>\n<main>\n";
    o += "<h1>Consolidation plan <span lang=\"zh\">集约化</span></h1>\n";
    let s = &r.summary;
    let _ = writeln!(
        o,
        "<p class=\"lead\">{} systems ({} replicas) on {} old servers in {} rooms, planned onto the shared nodes with \
         {:.0}% headroom (no node planned above that share of its cpu, memory or disk; GPUs go by whole device or a share of one).</p>",
        s.systems,
        s.replicas,
        s.servers,
        s.rooms,
        r.headroom * 100.0
    );
    cards(&mut o, r);
    utilisation(&mut o, r);
    rooms(&mut o, r);
    nodes(&mut o, r);
    unplaced(&mut o, r);
    showback(&mut o, r);
    systems(&mut o, r);
    let cost = r
        .node_cost
        .as_ref()
        .map_or_else(String::new, |c| format!("<p><b>Cost bound</b> ({}): {}</p>", esc(c.name), esc(&c.statement)));
    let _ = writeln!(
        o,
        "<footer><p><b>Lower bound</b> ({}): {}</p>{cost}<p>Schema {}; the same report is available as JSON and \
         Markdown (<code>zhengyun-plan --format json|markdown</code>).</p></footer>",
        esc(r.lower_bound.name),
        esc(&r.lower_bound.statement),
        esc(r.schema)
    );
    o += "</main>\n</body>\n</html>\n";
    o
}

fn card(o: &mut String, value: &str, key: &str) {
    let _ = writeln!(o, "<div class=\"card\"><div class=\"v\">{value}</div><div class=\"k\">{key}</div></div>");
}

fn cards(o: &mut String, r: &Report) {
    let s = &r.summary;
    let b = &r.lower_bound;
    *o += "<section class=\"cards\">\n";
    card(o, &format!("{} / {}", s.servers_retirable, s.servers), "old servers can be retired");
    card(o, &format!("{} / {}", s.rooms_retirable, s.rooms), "rooms can be retired entirely");
    card(o, &format!("{} <small>of {}</small>", s.nodes_used, s.nodes_available), "shared nodes used");
    let gap = match b.gap_percent {
        Some(g) => format!("at most {g:.1}% above the fewest possible"),
        None if !b.plan_complete => "no gap stated: not every replica placed".to_string(),
        None => String::new(),
    };
    card(o, &b.nodes.to_string(), &format!("nodes: lower bound; {gap}"));
    if let Some(c) = &r.node_cost {
        let bound = match (c.lower_bound, c.gap_percent) {
            (Some(lb), Some(g)) => format!("; cost bound {}, at most {g:.1}% above the cheapest possible", money(lb)),
            (Some(lb), None) => format!("; cost bound {}", money(lb)),
            (None, _) => "; no cost bound (not every node priced)".to_string(),
        };
        card(
            o,
            &c.monthly.map_or_else(|| "–".to_string(), money),
            &format!("monthly cost of the nodes used (nodes.csv prices){bound}"),
        );
    }
    card(o, &format!("{} / {}", s.replicas_placed, s.replicas), "replicas placed");
    let t = &r.showback.total.requested;
    card(o, &num(t.cpu_cores), &format!("cores requested, with {} GiB of memory", num(t.memory_gib)));
    if let Some(c) = &r.showback.total.monthly_cost {
        card(o, &money(c.total), "monthly cost of what is requested (prices file's currency)");
    }
    *o += "</section>\n";
}

fn utilisation(o: &mut String, r: &Report) {
    let u = &r.utilisation;
    *o += "<h2 id=\"utilisation\">Utilisation before and after</h2>\n";
    let before: [Option<f64>; DIMS] = match &u.before {
        Some(b) => [0, 1, 2, 3].map(|d| b.ratio.get(d)),
        None => [None; DIMS],
    };
    let after: [Option<f64>; DIMS] = [0, 1, 2, 3].map(|d| u.after.ratio.get(d));
    let top = before.iter().chain(after.iter()).flatten().fold(1.0f64, |a, &b| a.max(b)).min(1.5);
    let (w, h, left, right, bottom, plot) = (800.0, 290.0, 56.0, 96.0, 40.0, 210.0);
    let base = h - bottom;
    let y = |v: f64| base - v.min(top) / top * plot;
    let _ = writeln!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" \
         aria-label=\"Utilisation per resource, before and after\">"
    );
    let mut tick = 0.0;
    while tick <= top + 1e-9 {
        let (x2, ty, lx) = (w - right, y(tick), left - 6.0);
        let _ = writeln!(
            o,
            "<line x1=\"{left}\" x2=\"{x2}\" y1=\"{ty:.1}\" y2=\"{ty:.1}\" stroke=\"#e4e7eb\"/><text x=\"{lx}\" y=\"{:.1}\" \
             text-anchor=\"end\">{:.0}%</text>",
            ty + 4.0,
            tick * 100.0
        );
        tick += 0.25;
    }
    let hy = y(r.headroom);
    let _ = writeln!(
        o,
        "<line x1=\"{left}\" x2=\"{}\" y1=\"{hy:.1}\" y2=\"{hy:.1}\" stroke=\"#c62828\" stroke-dasharray=\"5 4\"/>\
         <text x=\"{}\" y=\"{:.1}\" style=\"fill:#c62828\">headroom {:.0}%</text>",
        w - right,
        w - right + 6.0,
        hy + 4.0,
        r.headroom * 100.0
    );
    let group = (w - left - right) / DIMS as f64;
    for d in 0..DIMS {
        let gx = left + group * d as f64;
        for (k, (v, fill, label)) in
            [(before[d], "#9aa5b1", "before"), (after[d], "#2f6fde", "after")].into_iter().enumerate()
        {
            let x = gx + group / 2.0 - 58.0 + k as f64 * 60.0;
            match v {
                Some(v) => {
                    let _ = writeln!(
                        o,
                        "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"56\" height=\"{:.1}\" fill=\"{fill}\"><title>{} {label}: {}</title></rect>\
                         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                        y(v),
                        base - y(v),
                        LABELS[d],
                        pct(Some(v)),
                        x + 28.0,
                        y(v) - 4.0,
                        pct(Some(v))
                    );
                }
                None => {
                    let _ = writeln!(
                        o,
                        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" style=\"fill:#9aa5b1\">n/a</text>",
                        x + 28.0,
                        base - 4.0
                    );
                }
            }
        }
        let _ = writeln!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" style=\"font-weight:600\">{}</text>",
            gx + group / 2.0,
            base + 18.0,
            LABELS[d]
        );
    }
    let _ = writeln!(
        o,
        "<line x1=\"{left}\" x2=\"{}\" y1=\"{base}\" y2=\"{base}\" stroke=\"#616e7c\"/>\
         <rect x=\"{left}\" y=\"8\" width=\"10\" height=\"10\" fill=\"#9aa5b1\"/><text x=\"{}\" y=\"17\">before: old servers</text>\
         <rect x=\"{}\" y=\"8\" width=\"10\" height=\"10\" fill=\"#2f6fde\"/><text x=\"{}\" y=\"17\">after: shared nodes used</text></svg>",
        w - right,
        left + 14.0,
        left + 150.0,
        left + 164.0
    );
    *o += "<table>\n<tr><th>resource</th><th class=\"n\">before: needed</th><th class=\"n\">old servers' capacity</th>\
           <th class=\"n\">after: placed</th><th class=\"n\">capacity of the nodes used</th></tr>\n";
    for d in 0..DIMS {
        let (bn, bc) = match &u.before {
            Some(b) => (
                format!("{} {}", num(b.requested.get(d)), UNITS[d]),
                format!("{} {}", num(b.capacity.get(d)), UNITS[d]),
            ),
            None => ("–".to_string(), "–".to_string()),
        };
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td class=\"n\">{bn}</td><td class=\"n\">{bc}</td><td class=\"n\">{} {}</td><td class=\"n\">{} {}</td></tr>",
            LABELS[d],
            num(u.after.requested.get(d)),
            UNITS[d],
            num(u.after.capacity.get(d)),
            UNITS[d]
        );
    }
    *o += "</table>\n<p class=\"note\">Before: every system on its old server (needs × replicas) over the old servers' \
           capacity. After: the replicas placed over the full capacity of the shared nodes they use.";
    if u.before.is_none() {
        *o += " Before is not known: no servers.csv (the old servers' capacity) was given.";
    }
    *o += "</p>\n";
}

fn rooms(o: &mut String, r: &Report) {
    *o += "<h2 id=\"rooms\">Rooms: what can be retired</h2>\n<table>\n<tr><th>room</th><th>departments</th><th class=\"n\">servers</th>\
           <th class=\"n\">can be retired</th><th>what stays, and why</th></tr>\n";
    for room in &r.rooms {
        let mut why = String::new();
        for s in room.servers_detail.iter().filter(|s| !s.retirable) {
            let _ = write!(why, "<b>{}</b>: ", esc(&s.server));
            let b: Vec<String> = s
                .blocked_by
                .iter()
                .map(|b| format!("{} replica {} — {}", esc(&b.system), b.replica, esc(&b.reason)))
                .collect();
            why += &b.join("; ");
            why += "<br>";
        }
        let status = if room.retirable {
            format!("<span class=\"yes\">{}: the whole room</span>", room.servers_retirable)
        } else {
            format!("<span class=\"no\">{}</span>", room.servers_retirable)
        };
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{status}</td><td class=\"why\">{why}</td></tr>",
            esc(&room.room),
            room.departments.iter().map(|d| esc(d)).collect::<Vec<_>>().join(", "),
            room.servers
        );
    }
    *o += "</table>\n";
}

fn nodes(o: &mut String, r: &Report) {
    let _ = writeln!(
        o,
        "<h2 id=\"nodes\">Nodes used ({})</h2>\n<p class=\"note\">Each bar is one resource of one node, its full width the node's \
         capacity, stacked by department; the red tick is the headroom.</p>",
        r.nodes_used.len()
    );
    let index: BTreeMap<&str, usize> =
        r.showback.departments.iter().enumerate().map(|(i, d)| (d.department.as_str(), i)).collect();
    let mut on_nodes: Vec<&str> =
        r.nodes_used.iter().flat_map(|n| n.departments.iter().map(|d| d.department.as_str())).collect();
    on_nodes.sort_unstable();
    on_nodes.dedup();
    *o += "<div class=\"legend\">";
    for d in &on_nodes {
        let _ = write!(
            o,
            "<span><span class=\"sw\" style=\"background:{}\"></span>{}</span>",
            colour(index.get(d).copied().unwrap_or(0)),
            esc(d)
        );
    }
    *o += "</div>\n";
    let (label, col, bar, row) = (210.0, 240.0, 200.0, 18.0);
    let w = label + col * DIMS as f64;
    let h = 26.0 + row * r.nodes_used.len() as f64 + 6.0;
    let _ = writeln!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" \
         aria-label=\"Utilisation of each node used, by department\">"
    );
    for d in 0..DIMS {
        let _ = writeln!(
            o,
            "<text x=\"{:.1}\" y=\"16\" style=\"font-weight:600\">{} ({})</text>",
            label + col * d as f64,
            LABELS[d],
            UNITS[d]
        );
    }
    for (i, n) in r.nodes_used.iter().enumerate() {
        let y = 26.0 + row * i as f64;
        let _ = writeln!(
            o,
            "<text x=\"6\" y=\"{:.1}\">{}<title>{} · {} · {} replicas</title></text>",
            y + 10.0,
            esc(&n.node),
            esc(&n.zone),
            n.arch,
            n.replicas
        );
        for d in 0..DIMS {
            let x0 = label + col * d as f64;
            let cap = n.capacity.get(d);
            if cap <= 0.0 {
                let _ =
                    writeln!(o, "<text x=\"{:.1}\" y=\"{:.1}\" style=\"fill:#9aa5b1\">none</text>", x0 + 4.0, y + 10.0);
                continue;
            }
            let _ = writeln!(o, "<rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{bar}\" height=\"12\" fill=\"#eef1f4\"/>");
            let mut x = x0;
            for dep in &n.departments {
                let v = dep.requested.get(d);
                if v <= 0.0 {
                    continue;
                }
                let wd = v / cap * bar;
                let _ = writeln!(
                    o,
                    "<rect x=\"{x:.2}\" y=\"{y:.1}\" width=\"{wd:.2}\" height=\"12\" fill=\"{}\" stroke=\"#fff\" stroke-width=\"0.5\">\
                     <title>{}: {} {}</title></rect>",
                    colour(index.get(dep.department.as_str()).copied().unwrap_or(0)),
                    esc(&dep.department),
                    num(v),
                    UNITS[d]
                );
                x += wd;
            }
            let hx = x0 + r.headroom * bar;
            let _ = writeln!(
                o,
                "<line x1=\"{hx:.1}\" x2=\"{hx:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#c62828\" stroke-width=\"1.5\"/>",
                y - 2.0,
                y + 14.0
            );
            let _ = writeln!(
                o,
                "<text x=\"{:.1}\" y=\"{:.1}\" style=\"font-size:9px;fill:#616e7c\">{}</text>",
                x0 + bar + 2.0,
                y + 10.0,
                pct(n.ratio.get(d)).trim_end_matches('%')
            );
        }
    }
    *o += "</svg>\n";
}

fn unplaced(o: &mut String, r: &Report) {
    *o += "<h2 id=\"unplaced\">Not placed</h2>\n";
    if r.unplaced.is_empty() {
        *o += "<p>Every replica has a place.</p>\n";
        return;
    }
    *o += "<table>\n<tr><th>system</th><th>department</th><th>room / server</th><th class=\"n\">replica</th><th>why</th></tr>\n";
    for p in &r.unplaced {
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{} / {}</td><td class=\"n\">{}</td><td class=\"why\">{}</td></tr>",
            esc(&p.system),
            esc(&p.department),
            esc(&p.room),
            esc(&p.server),
            p.replica,
            esc(&p.reason)
        );
    }
    *o += "</table>\n<p>Unplaced replicas by department: ";
    let by: Vec<String> =
        r.unplaced_by_department.iter().map(|d| format!("{} {}", esc(&d.department), d.replicas)).collect();
    *o += &by.join(", ");
    *o += ".</p>\n";
    if !r.shortfall.is_empty() {
        *o += "<h3>Demand the nodes cannot hold</h3>\n<p>No plan places every replica:</p>\n<table>\n<tr><th>zone</th><th>replicas</th><th>resource</th><th class=\"n\">asked</th><th class=\"n\">the nodes they may use have</th><th class=\"n\">short by</th></tr>\n";
        for s in &r.shortfall {
            let [zone, scope, resource, numbers @ ..] = s.cells().map(|c| esc(&c));
            let numbers: Vec<String> = numbers.iter().map(|n| format!("<td class=\"n\">{n}</td>")).collect();
            let _ = writeln!(o, "<tr><td>{zone}</td><td>{scope}</td><td>{resource}</td>{}</tr>", numbers.concat());
        }
        *o += "</table>\n";
    }
}

fn quantity_cells(o: &mut String, q: &Quantities, quota: Option<&Quantities>, over: &[&str]) {
    for d in 0..DIMS {
        match quota {
            Some(l) => {
                let bad = over.contains(&LABELS[d]);
                let _ = write!(
                    o,
                    "<td class=\"n{}\">{} / {}</td>",
                    if bad { " over" } else { "" },
                    num(q.get(d)),
                    num(l.get(d))
                );
            }
            None => {
                let _ = write!(o, "<td class=\"n\">{}</td>", num(q.get(d)));
            }
        }
    }
}

fn showback(o: &mut String, r: &Report) {
    let sb = &r.showback;
    *o += "<h2 id=\"showback\">Showback <span lang=\"zh\">以租代建</span></h2>\n<p class=\"note\">Requested: each system's needs × its \
           replicas, placed or not.";
    let quotas = sb.departments.iter().any(|d| d.quota.is_some());
    if quotas {
        *o += " With a quota, a cell reads requested / quota; red where the quota is exceeded.";
    }
    if let Some(prices) = &sb.prices {
        let p: Vec<String> =
            prices.iter().map(|p| format!("{} {} per {}", p.resource, money(p.price_per_month), p.unit)).collect();
        let _ = write!(o, " Monthly prices (from the prices file, in its currency): {}.", esc(&p.join(", ")));
        if !sb.unpriced.is_empty() {
            let _ = write!(o, " Not priced, so not in the cost: {}.", sb.unpriced.join(", "));
        }
    }
    *o += "</p>\n<table>\n<tr><th>department</th><th class=\"n\">systems</th><th class=\"n\">replicas</th>";
    for d in 0..DIMS {
        let _ = write!(o, "<th class=\"n\">{} ({})</th>", LABELS[d], UNITS[d]);
    }
    let cost = sb.prices.is_some();
    if cost {
        *o += "<th class=\"n\">monthly cost</th>";
    }
    *o += "</tr>\n";
    for d in &sb.departments {
        let _ = write!(
            o,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>",
            esc(&d.department),
            d.systems,
            d.replicas
        );
        quantity_cells(o, &d.requested, d.quota.as_ref(), &d.over_quota);
        if let Some(c) = &d.monthly_cost {
            let _ = write!(o, "<td class=\"n\">{}</td>", money(c.total));
        }
        *o += "</tr>\n";
    }
    let _ = write!(
        o,
        "<tr class=\"total\"><td>total</td><td class=\"n\">{}</td><td class=\"n\">{}</td>",
        sb.departments.iter().map(|d| d.systems).sum::<usize>(),
        sb.departments.iter().map(|d| d.replicas).sum::<usize>()
    );
    quantity_cells(o, &sb.total.requested, None, &[]);
    if let Some(c) = &sb.total.monthly_cost {
        let _ = write!(o, "<td class=\"n\">{}</td>", money(c.total));
    }
    *o += "</tr>\n</table>\n<h3>Per room</h3>\n<table>\n<tr><th>room</th><th>departments</th><th class=\"n\">systems</th>\
           <th class=\"n\">replicas</th>";
    for d in 0..DIMS {
        let _ = write!(o, "<th class=\"n\">{} ({})</th>", LABELS[d], UNITS[d]);
    }
    *o += "</tr>\n";
    for room in &sb.rooms {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>",
            esc(&room.room),
            room.departments.iter().map(|d| esc(d)).collect::<Vec<_>>().join(", "),
            room.systems,
            room.replicas
        );
        quantity_cells(o, &room.requested, None, &[]);
        *o += "</tr>\n";
    }
    *o += "</table>\n";
}

fn systems(o: &mut String, r: &Report) {
    let _ = writeln!(
        o,
        "<h2 id=\"systems\">Where each system goes</h2>\n<details>\n<summary>{} systems, {} replicas</summary>\n<table>\n\
         <tr><th>system</th><th>department</th><th>from (room / server)</th><th>zone</th><th>arch</th><th>nodes</th></tr>",
        r.systems.len(),
        r.summary.replicas
    );
    for s in &r.systems {
        let to: Vec<String> = s
            .replicas
            .iter()
            .map(|p| p.node.as_deref().map_or_else(|| "<span class=\"no\">not placed</span>".to_string(), esc))
            .collect();
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{} / {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.system),
            esc(&s.department),
            esc(&s.room),
            esc(&s.server),
            esc(&s.zone),
            s.arch,
            to.join(", ")
        );
    }
    *o += "</table>\n</details>\n";
}
