//! `zhengyun-operator tree`: the department tree as text, with each department's budget, what
//! is handed down from it and what its subtree uses.

use std::collections::BTreeMap;

use kube::ResourceExt;

use super::budget;
use crate::api::{Tenant, department::Department};

/// The tree, one department a line, children indented under their parent; tenants under their
/// department. Departments whose parent does not exist are listed at the top with a note.
pub fn render(departments: &[&Department], tenants: &[&Tenant]) -> String {
    let codes: std::collections::BTreeSet<&str> = departments.iter().map(|d| d.spec.code.as_str()).collect();
    let mut children: BTreeMap<Option<&str>, Vec<&Department>> = BTreeMap::new();
    for d in departments {
        let parent = d.spec.parent.as_deref().filter(|p| codes.contains(p));
        children.entry(parent).or_default().push(d);
    }
    for list in children.values_mut() {
        list.sort_by(|a, b| a.spec.code.cmp(&b.spec.code));
    }
    let mut out = String::new();
    let mut seen = std::collections::BTreeSet::new();
    let roots = children.get(&None).cloned().unwrap_or_default();
    for d in roots {
        line(&mut out, d, 0, departments, tenants, &children, &mut seen);
    }
    // Departments in a cycle have no root: still shown, said so.
    for d in departments {
        if !seen.contains(d.spec.code.as_str()) {
            out.push_str(&format!("{} (in a cycle of parents)\n", d.spec.code));
        }
    }
    out
}

fn line<'a>(
    out: &mut String,
    d: &'a Department,
    depth: usize,
    departments: &[&Department],
    tenants: &[&Tenant],
    children: &BTreeMap<Option<&str>, Vec<&'a Department>>,
    seen: &mut std::collections::BTreeSet<&'a str>,
) {
    if !seen.insert(d.spec.code.as_str()) {
        return;
    }
    let indent = "  ".repeat(depth);
    let code = d.spec.code.as_str();
    let takers = budget::takers(code, departments, tenants);
    let limit = budget::amounts(&d.spec.budget);
    let allocated = budget::allocated(&takers);
    let used = budget::formatted(&budget::used(code, departments, tenants));
    let missing = d.spec.parent.as_deref().filter(|p| !departments.iter().any(|o| o.spec.code == *p));
    let mut text = format!("{indent}{code} {}", d.spec.name_zh);
    if !limit.is_empty() {
        text.push_str(&format!("  budget: {}", budget::summary(&limit, &allocated)));
    }
    if !used.is_empty() {
        let u: Vec<String> = used.iter().map(|(k, v)| format!("{k} {v}")).collect();
        text.push_str(&format!("  used: {}", u.join(", ")));
    }
    if let Err(over) = budget::fits(code, &limit, &takers) {
        text.push_str(&format!("  OVER BUDGET: {over}"));
    }
    if let Some(p) = missing {
        text.push_str(&format!("  (parent {p} does not exist)"));
    }
    out.push_str(&text);
    out.push('\n');
    let mut own: Vec<&&Tenant> = tenants.iter().filter(|t| t.spec.department.code == code).collect();
    own.sort_by_key(|t| t.name_any());
    for t in own {
        let quota = budget::formatted(&budget::amounts(&t.spec.quota));
        let q: Vec<String> = quota
            .iter()
            .filter(|(k, _)| limit.contains_key(k.as_str()) || limit.is_empty())
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        out.push_str(&format!("{indent}  - tenant {}  quota: {}\n", t.name_any(), q.join(", ")));
    }
    for c in children.get(&Some(code)).cloned().unwrap_or_default() {
        line(out, c, depth + 1, departments, tenants, children, seen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dept(code: &str, parent: Option<&str>, cpu: &str) -> Department {
        crate::departments::fixture(code, parent, Some(cpu))
    }

    #[test]
    fn children_are_indented_under_their_parent_with_budgets() {
        let gd = dept("GD", None, "100");
        let gz = dept("GZ", Some("GD"), "40");
        let sz = dept("SZ", Some("GD"), "30");
        let th = dept("TH", Some("GZ"), "10");
        let lost = dept("XX", Some("NOPE"), "1");
        let text = render(&[&th, &sz, &gz, &gd, &lost], &[]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "GD GD局  budget: cpu 70/100", "{text}");
        assert!(lines[1].starts_with("  GZ GZ局  budget: cpu 10/40"), "{text}");
        assert!(lines[2].starts_with("    TH "), "{text}");
        assert!(lines[3].starts_with("  SZ "), "{text}");
        assert!(text.contains("XX XX局  budget: cpu 0/1  (parent NOPE does not exist)"), "{text}");
    }
}
