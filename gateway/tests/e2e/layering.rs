//! The tree shows the architecture: reads every `crate::` path in `gateway/src` and checks
//! that modules import only downwards (server → conn → core → error → config → broker →
//! route → auth → leaves) and that no two files import each other, directly or in a circle.
//! `lib.rs` (the map, and the bench's re-exports) and `main.rs` (the binary) are left out.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module's layer: a module may import only modules of a lower layer.
const LAYERS: &[(&str, u32)] = &[
    ("server", 9),
    ("conn", 8),
    ("core", 7),
    ("error", 6),
    ("config", 5),
    ("broker", 4),
    ("route", 3),
    ("auth", 2),
    ("http", 1),
    ("sse", 1),
    ("stats", 1),
    ("task", 1),
    ("util", 0),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file: `core/hub.rs` → `core::hub`, `core/mod.rs` → `core`.
fn module_of(file: &Path) -> String {
    let rel = file.strip_prefix(src()).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts.join("::")
}

/// Expands the use tree after `crate::` at the start of `text` into full paths.
fn expand(text: &str) -> Vec<Vec<String>> {
    fn tree(s: &mut &str, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
        let mut path = prefix;
        loop {
            let t = s.trim_start();
            if let Some(rest) = t.strip_prefix('{') {
                *s = rest;
                loop {
                    tree(s, path.clone(), out);
                    let t = s.trim_start();
                    if let Some(rest) = t.strip_prefix(',') {
                        *s = rest;
                        if let Some(rest) = s.trim_start().strip_prefix('}') {
                            *s = rest;
                            return;
                        }
                    } else if let Some(rest) = t.strip_prefix('}') {
                        *s = rest;
                        return;
                    } else {
                        return;
                    }
                }
            }
            let end = t
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(t.len());
            if end == 0 {
                *s = t;
                out.push(path);
                return;
            }
            path.push(t[..end].to_string());
            let after = &t[end..];
            match after.strip_prefix("::") {
                Some(rest) => *s = rest,
                None => {
                    *s = after;
                    out.push(path);
                    return;
                }
            }
        }
    }
    let mut s = text;
    let mut out = Vec::new();
    tree(&mut s, Vec::new(), &mut out);
    out
}

/// The file (as a module path) that `path` names: its longest prefix that is a module.
fn target(path: &[String], modules: &BTreeSet<String>) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|k| path[..k].join("::"))
        .find(|m| modules.contains(m))
}

/// Module → modules it names, over every file but lib.rs and main.rs.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    let mut g = BTreeMap::new();
    for file in &files {
        let module = module_of(file);
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("read");
        let mut deps = BTreeSet::new();
        for line in text.lines() {
            // Comments and doc links name paths without importing them.
            let code = line.split("//").next().unwrap_or_default();
            for (i, _) in code.match_indices("crate::") {
                for path in expand(&code[i + "crate::".len()..]) {
                    if let Some(t) = target(&path, &modules) {
                        if t != module {
                            deps.insert(t);
                        }
                    }
                }
            }
        }
        g.insert(module, deps);
    }
    g
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

fn layer(module: &str) -> u32 {
    LAYERS
        .iter()
        .find(|(m, _)| *m == top(module))
        .unwrap_or_else(|| panic!("module {module} has no layer in LAYERS"))
        .1
}

#[test]
fn the_parser_reads_use_trees() {
    let paths = |s: &str| -> Vec<String> { expand(s).iter().map(|p| p.join("::")).collect() };
    assert_eq!(paths("core::hub::Hub;"), ["core::hub::Hub"]);
    assert_eq!(
        paths("core::{hub::{Hub, Resume}, shard};"),
        ["core::hub::Hub", "core::hub::Resume", "core::shard"]
    );
    assert_eq!(
        paths("sse::encode::encode_retry(1, out)"),
        ["sse::encode::encode_retry"]
    );
    assert_eq!(
        paths("route::{table, resolve,};"),
        ["route::table", "route::resolve"]
    );
}

#[test]
fn modules_import_only_downwards() {
    let g = graph();
    assert!(
        g.contains_key("core::shard") && g.contains_key("server::start"),
        "{g:?}"
    );
    let mut wrong = Vec::new();
    for (module, deps) in &g {
        for dep in deps {
            if top(dep) != top(module) && layer(dep) >= layer(module) {
                wrong.push(format!("{module} -> {dep}"));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layers: {wrong:#?}");
}

#[test]
fn no_file_imports_itself_through_a_circle() {
    let g = graph();
    // Depth-first search for a back edge, reporting the circle.
    fn visit(
        m: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == m) {
            let mut circle = stack[i..].to_vec();
            circle.push(m.to_string());
            return Some(circle);
        }
        if done.contains(m) {
            return None;
        }
        stack.push(m.to_string());
        for d in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(d, g, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in g.keys() {
        if let Some(circle) = visit(m, &g, &mut Vec::new(), &mut done) {
            panic!("import circle: {}", circle.join(" -> "));
        }
    }
}
