//! No import cycle between modules, in any crate of the workspace (docs/architecture.md): a
//! module may use its siblings only one way. Crates cannot form cycles (Cargo refuses them);
//! modules can, and each one makes the two harder to change apart.
//!
//! Read from the sources: every `crate::…` and `super::…` path outside tests and comments is an
//! edge from the file's module to the longest module that path names. An edge between two
//! modules counts between the ancestors that are siblings (`a::x` using `b::y` is `a` using
//! `b`); a module using its own descendants or ancestors is not a cycle.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

type Module = Vec<String>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/a/b.rs` is `a::b`, `src/a/mod.rs` is `a`; `lib.rs`, `main.rs` and `bin/*` are roots.
fn module_of(src: &Path, file: &Path) -> Option<Module> {
    let rel = file.strip_prefix(src).ok()?;
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
    if parts.first().is_some_and(|p| p == "bin") {
        return None;
    }
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
        return Some(Vec::new());
    }
    Some(parts)
}

/// The source without comments, string literals and the unit tests at the end of the file.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// The paths a `use` tree or path expression starting at `s` names, brace groups expanded.
fn paths(s: &str, prefix: &[String], out: &mut Vec<Vec<String>>) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    let mut segs: Vec<String> = prefix.to_vec();
    loop {
        if b.get(i) == Some(&b'{') {
            i += 1;
            loop {
                while b.get(i).is_some_and(|c| c.is_ascii_whitespace() || *c == b',') {
                    i += 1;
                }
                if i >= b.len() || b[i] == b'}' {
                    return i + 1;
                }
                let used = paths(&s[i..], &segs, out);
                i += used.max(1);
            }
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        if i > start && &s[start..i] != "self" {
            segs.push(s[start..i].to_string());
        }
        if s[i..].starts_with("::") {
            i += 2;
            continue;
        }
        out.push(segs);
        return i;
    }
}

/// Edges from each module of a crate to the modules it names.
fn edges(src: &Path) -> (BTreeSet<Module>, BTreeMap<Module, BTreeSet<Module>>) {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<Module, PathBuf> =
        files.iter().filter_map(|f| Some((module_of(src, f)?, f.clone()))).collect();
    let known: BTreeSet<Module> = modules.keys().cloned().collect();
    let mut graph: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, file) in &modules {
        let text = code(&std::fs::read_to_string(file).unwrap_or_default());
        for (anchor, base) in [("crate::", Vec::new()), ("super::", module[..module.len().saturating_sub(1)].to_vec())]
        {
            let mut at = 0;
            while let Some(found) = text[at..].find(anchor) {
                let i = at + found;
                at = i + anchor.len();
                // `xcrate::` or `a_super::` are other names.
                if i > 0 && text.as_bytes()[i - 1].is_ascii_alphanumeric() {
                    continue;
                }
                let mut named = Vec::new();
                paths(&text[at..], &base, &mut named);
                for p in named {
                    // The longest prefix that is a module: `crate::a::b::Item` names `a::b`.
                    if let Some(target) = (1..=p.len()).rev().map(|k| p[..k].to_vec()).find(|m| known.contains(m)) {
                        graph.entry(module.clone()).or_default().insert(target);
                    }
                }
            }
        }
    }
    (known, graph)
}

/// The edges between siblings that `graph` implies.
fn sibling_edges(graph: &BTreeMap<Module, BTreeSet<Module>>) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut out: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (a, targets) in graph {
        for b in targets {
            let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
            if common == a.len() || common == b.len() {
                continue;
            }
            out.entry(a[..=common].to_vec()).or_default().insert(b[..=common].to_vec());
        }
    }
    out
}

/// The strongly connected components with more than one module (Tarjan's algorithm).
fn cycles(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct State<'a> {
        graph: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on: BTreeSet<&'a Module>,
        found: Vec<Vec<Module>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Module) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on.insert(v);
        let graph = s.graph;
        for w in graph.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                if let Some(lv) = s.low.get_mut(v) {
                    *lv = (*lv).min(lw);
                }
            } else if s.on.contains(w) {
                let iw = s.index[w];
                if let Some(lv) = s.low.get_mut(v) {
                    *lv = (*lv).min(iw);
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.found
}

#[test]
fn no_module_of_any_crate_uses_a_module_that_uses_it_back() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut crates = Vec::new();
    for e in std::fs::read_dir(&workspace).expect("the workspace").flatten() {
        if e.path().join("Cargo.toml").is_file() && e.path().join("src").is_dir() {
            crates.push(e.path());
        }
    }
    assert!(crates.len() >= 6, "the workspace's crates: {crates:?}");
    let mut problems = Vec::new();
    let mut modules = 0;
    for c in &crates {
        let (known, graph) = edges(&c.join("src"));
        modules += known.len();
        for cycle in cycles(&sibling_edges(&graph)) {
            let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
            problems.push(format!("{}: {}", c.file_name().unwrap_or_default().to_string_lossy(), names.join(" ↔ ")));
        }
    }
    assert!(modules > 50, "too few modules found ({modules}): the scan is broken");
    assert!(problems.is_empty(), "import cycles between modules:\n{}", problems.join("\n"));
}

#[test]
fn the_scan_sees_a_cycle_and_ignores_comments_tests_and_descendants() {
    let dir = std::env::temp_dir().join(format!("zy-cycles-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("a")).expect("dir");
    let write = |p: &str, t: &str| std::fs::write(src.join(p), t).expect("write");
    write("lib.rs", "pub mod a; pub mod b; pub mod c;");
    write("a/mod.rs", "pub mod x; use self::x::X; use x::Y;");
    write("a/x.rs", "use crate::{b::{self, B}, c};\n// crate::a is a comment\nfn f() { let _ = \"crate::c\"; }");
    write("b.rs", "pub fn g() { super::a::x::f(); }");
    write("c.rs", "#[cfg(test)]\nmod tests { use crate::a; }");
    let (_, graph) = edges(&src);
    let found = cycles(&sibling_edges(&graph));
    let _ = std::fs::remove_dir_all(&dir);
    let names: Vec<Vec<String>> = found.iter().map(|c| c.iter().map(|m| m.join("::")).collect()).collect();
    assert_eq!(names, vec![vec!["a".to_string(), "b".to_string()]], "{graph:?}");
}
