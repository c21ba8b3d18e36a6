//! The report as one self-contained HTML page: no script, no outside resource, so it can be
//! archived with the assessment and opened anywhere.

use super::{Report, Verdict};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn badge(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "<span class=\"b pass\">PASS 符合</span>",
        Verdict::Fail => "<span class=\"b fail\">FAIL 不符合</span>",
        Verdict::NotApplicable => "<span class=\"b na\">N/A 不适用</span>",
    }
}

fn table(out: &mut String, head: &[&str], rows: impl IntoIterator<Item = Vec<String>>) {
    out.push_str("<table><tr>");
    for h in head {
        out.push_str(&format!("<th>{}</th>", esc(h)));
    }
    out.push_str("</tr>");
    let mut any = false;
    for r in rows {
        any = true;
        out.push_str("<tr>");
        for c in r {
            out.push_str(&format!("<td>{}</td>", esc(&c)));
        }
        out.push_str("</tr>");
    }
    if !any {
        out.push_str(&format!("<tr><td colspan=\"{}\"><i>none</i></td></tr>", head.len()));
    }
    out.push_str("</table>");
}

pub fn render(r: &Report) -> String {
    let mut o = String::new();
    o.push_str(
        "<!DOCTYPE html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>zhengyun compliance evidence 合规证据</title><style>\
         body{font-family:'Noto Sans CJK SC','Noto Sans',sans-serif;margin:2em;color:#222;max-width:1200px}\
         h1{font-size:1.5em}h2{border-bottom:2px solid #b22;padding-bottom:.2em;margin-top:2em}\
         table{border-collapse:collapse;width:100%;margin:.5em 0;font-size:.85em}\
         th,td{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top}th{background:#f3f3f3}\
         .b{padding:.1em .5em;border-radius:3px;font-weight:bold;white-space:nowrap}\
         .pass{background:#dfd;color:#060}.fail{background:#fdd;color:#a00}.na{background:#eee;color:#555}\
         .ok{color:#060}.no{color:#a00}.m td{text-align:center}.m td:first-child{text-align:left}\
         pre{background:#f7f7f7;padding:.5em;overflow-x:auto;font-size:.8em}</style></head><body>",
    );
    o.push_str("<h1>zhengyun 政云 · compliance evidence 合规证据</h1>");
    o.push_str(&format!(
        "<p>Generated {} from {} by <code>zhengyun-operator evidence</code> ({}). Every verdict below is computed from the objects listed in the sections it names; what the report cannot see is marked N/A with the reason.</p>",
        esc(&r.generated_at),
        esc(&r.cluster),
        esc(r.schema)
    ));
    o.push_str(&format!(
        "<p><b>Summary:</b> {} pass, {} fail, {} not applicable.</p>",
        r.summary.get("pass").unwrap_or(&0),
        r.summary.get("fail").unwrap_or(&0),
        r.summary.get("not_applicable").unwrap_or(&0)
    ));

    o.push_str("<h2 id=\"requirements\">Requirements 要求与结论</h2><table><tr><th>Standard</th><th>Clause</th><th>Check</th><th>Verdict</th><th>Reason</th><th>Evidence</th></tr>");
    for req in &r.requirements {
        for c in &req.checks {
            let links: Vec<String> = c.evidence.iter().map(|e| format!("<a href=\"#{e}\">{e}</a>")).collect();
            o.push_str(&format!(
                "<tr><td>{}</td><td>{}<br><small>{}</small></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(req.standard),
                esc(req.clause),
                esc(req.title),
                esc(&c.title),
                badge(c.verdict),
                esc(&c.reason),
                links.join(" ")
            ));
        }
    }
    o.push_str("</table>");

    o.push_str("<h2 id=\"reachability\">Reachability 可达性矩阵</h2><p>From the NetworkPolicies (and ClusterNetworkPolicies, where enforced) in force: <b class=\"ok\">allow</b> may connect, <b class=\"no\">deny</b> may not. Each cell's reason is in its tooltip and in the list below.</p>");
    o.push_str("<table class=\"m\"><tr><th>from \\ to</th>");
    for g in &r.groups {
        o.push_str(&format!("<th>{}</th>", esc(g)));
    }
    o.push_str("</tr>");
    for from in &r.groups {
        o.push_str(&format!("<tr><td><b>{}</b></td>", esc(from)));
        for to in &r.groups {
            match r.reachability.iter().find(|c| &c.from == from && &c.to == to) {
                Some(c) => o.push_str(&format!(
                    "<td title=\"{}\" class=\"{}\">{}</td>",
                    esc(&c.explanation),
                    if c.allowed { "ok" } else { "no" },
                    if c.allowed { "allow" } else { "deny" }
                )),
                None => o.push_str("<td>·</td>"),
            }
        }
        o.push_str("</tr>");
    }
    o.push_str("</table><details><summary>Why, pair by pair</summary>");
    table(
        &mut o,
        &["from", "to", "verdict and rules"],
        r.reachability.iter().map(|c| vec![c.from.clone(), c.to.clone(), c.explanation.clone()]),
    );
    o.push_str("</details>");
    if let Some(t) = &r.observed_traffic {
        o.push_str(&format!(
            "<h3>Observed on real pods 实测</h3><p>Connections attempted between running pods on the local nodes:</p><pre>{}</pre>",
            esc(t)
        ));
    }

    o.push_str("<h2 id=\"channels\">Exchange channels 数据共享交换通道</h2>");
    table(
        &mut o,
        &["channel", "from tenant", "to", "purpose", "phase", "requested by", "approved by", "approved at", "expires"],
        r.channels.iter().map(|c| {
            vec![
                c.name.clone(),
                c.from.clone(),
                c.to.clone(),
                c.purpose.clone(),
                c.phase.clone(),
                c.requested_by.clone(),
                c.approved_by.clone(),
                c.approved_at.clone(),
                c.expires.clone(),
            ]
        }),
    );

    o.push_str("<h2 id=\"certificates\">Certificates and keys 证书与密钥</h2><h3>CAs</h3>");
    table(
        &mut o,
        &["kind", "name", "department", "subject", "not after", "ready", "key in"],
        r.issuers.iter().map(|x| {
            vec![
                x.kind.to_string(),
                x.name.clone(),
                x.department.clone(),
                x.subject.clone(),
                x.not_after.clone(),
                if x.ready { "yes" } else { "NO" }.into(),
                x.key_secret.clone(),
            ]
        }),
    );
    o.push_str("<h3>Certificates</h3>");
    table(
        &mut o,
        &["namespace/name", "issuer", "algorithm", "not before", "not after", "renews at", "state", "keys in"],
        r.certificates.iter().map(|c| {
            vec![
                format!("{}/{}", c.namespace, c.name),
                c.issuer.clone(),
                c.algorithm.to_string(),
                c.not_before.clone(),
                c.not_after.clone(),
                c.renewal.clone(),
                c.state.clone(),
                c.key_secret.clone(),
            ]
        }),
    );

    o.push_str("<h2 id=\"tenants\">Tenants 租户</h2>");
    table(
        &mut o,
        &["tenant", "department", "等保 level", "pod security (enforce)", "quota", "owners", "without default-deny"],
        r.tenants.iter().map(|t| {
            vec![
                t.name.clone(),
                t.department.clone(),
                t.level.to_string(),
                t.pod_security.iter().map(|(n, e)| format!("{n}: {e}")).collect::<Vec<_>>().join(", "),
                t.quota.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", "),
                t.owners.join(", "),
                if t.without_default_deny.is_empty() { "-".into() } else { t.without_default_deny.join(", ") },
            ]
        }),
    );

    o.push_str(&format!(
        "<h2 id=\"operator\">The operator 运维组件</h2><h3>Its rights (ClusterRole {})</h3>",
        esc(&r.operator.role)
    ));
    table(&mut o, &["rule"], r.operator.rbac.iter().map(|l| vec![l.clone()]));
    o.push_str("<h3>Admission webhooks</h3>");
    table(&mut o, &["webhook", "failure policy"], r.operator.webhooks.iter().map(|(n, p)| vec![n.clone(), p.clone()]));
    if !r.unreadable.is_empty() {
        o.push_str("<h2 id=\"unreadable\">Objects not read 未能读取的对象</h2><p>Stored under an older schema; the verdicts above do not cover them.</p>");
        table(&mut o, &["object and why"], r.unreadable.iter().map(|u| vec![u.clone()]));
    }
    o.push_str(
        "<h2>What this report does not prove 本报告不能证明的</h2><ul>\
         <li>That the cluster's network plugin enforces NetworkPolicy: the matrix is what the policies say; the observed matrix (when given) is what real pods did.</li>\
         <li>Anything about the API server's audit log, etcd encryption at rest, the nodes' operating systems or the physical rooms.</li>\
         <li>That keys never left their Secrets: it lists where they are kept, not who read them.</li>\
         <li>Conformance of the cryptographic modules themselves (a 密评 lab tests the Tongsuo build).</li></ul>",
    );
    o.push_str("</body></html>\n");
    o
}
