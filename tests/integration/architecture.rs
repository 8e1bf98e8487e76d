//! Architecture invariants of `src/`, each stated in the README's code map, checked on the source text.
//!
//! These read the code, not run it: a module that starts to depend on another it must not fails here
//! with the file and line, before anyone reviews it. The layer order is [`LAYERS`]; the graph of
//! files ([`file_graph`]) has no cycle; nothing outside `src/source/` names a kind of source.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file below `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The lines of a file that are code: comments (`//`, `//!`, `///`) dropped.
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(path).expect("read source file");
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split("//").next().unwrap_or_default().to_string()))
        .filter(|(_, l)| !l.trim().is_empty())
        .collect()
}

/// The top-level module a file of `src/` belongs to (`src/serve/http.rs` → `serve`); `None` for
/// the crate root, the binary and the build script.
fn top_module(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src()).ok()?;
    let first = rel.components().next()?.as_os_str().to_string_lossy().to_string();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    (!matches!(name.as_str(), "lib" | "main" | "build")).then_some(name)
}

fn offenders(files: &[PathBuf], needles: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for f in files {
        for (n, line) in code_lines(f) {
            if let Some(needle) = needles.iter().find(|needle| line.contains(*needle)) {
                out.push(format!("{}:{n}: {needle}", f.display()));
            }
        }
    }
    out
}

/// Each top-level module of `src/` and the modules it may depend on: the data path, bottom up.
/// The HTTP side reads what was published and never reaches the scheduler or a source.
const LAYERS: [(&str, &[&str]); 13] = [
    ("secret", &[]),
    ("logging", &[]),
    ("resident", &[]),
    ("rules", &["secret"]),
    ("eval", &["rules", "secret"]),
    ("source", &["eval", "rules", "secret"]),
    ("publish", &["eval", "rules", "secret"]),
    ("run", &["publish", "source", "eval", "rules", "secret", "resident"]),
    ("check", &["source", "eval", "rules", "secret"]),
    ("convert", &["rules"]),
    ("rule_tests", &["check", "run", "publish", "source", "eval", "rules", "secret"]),
    ("http", &["publish", "eval", "rules", "secret", "logging"]),
    ("app", &["http", "check", "run", "publish", "source", "eval", "rules", "secret", "logging", "resident"]),
];

#[test]
fn only_source_postgres_names_the_postgresql_driver_or_pool_crates() {
    let outside: Vec<PathBuf> =
        rust_files(&src()).into_iter().filter(|f| !f.starts_with(src().join("source/postgres"))).collect();
    let found = offenders(&outside, &["tokio_postgres", "deadpool_postgres", "postgres_types", "postgres_protocol"]);
    assert!(found.is_empty(), "the PostgreSQL driver is named outside src/source/postgres:\n{}", found.join("\n"));
}

#[test]
fn only_source_mysql_names_the_mysql_driver() {
    let outside: Vec<PathBuf> =
        rust_files(&src()).into_iter().filter(|f| !f.starts_with(src().join("source/mysql"))).collect();
    let found = offenders(&outside, &["mysql_async", "mysql_common"]);
    assert!(found.is_empty(), "the MySQL driver is named outside src/source/mysql:\n{}", found.join("\n"));
}

#[test]
fn only_the_kinds_with_a_server_name_the_pool_crate() {
    // deadpool bounds the sessions of PostgreSQL and MySQL alike; nothing else pools.
    let outside: Vec<PathBuf> = rust_files(&src())
        .into_iter()
        .filter(|f| !f.starts_with(src().join("source/postgres")) && !f.starts_with(src().join("source/mysql")))
        .collect();
    let found = offenders(&outside, &["deadpool"]);
    assert!(found.is_empty(), "the pool crate is named outside the kinds with a server:\n{}", found.join("\n"));
}

#[test]
fn only_source_http_json_names_the_http_client_or_sqlite_crates() {
    let outside: Vec<PathBuf> =
        rust_files(&src()).into_iter().filter(|f| !f.starts_with(src().join("source/http_json"))).collect();
    let found = offenders(&outside, &["reqwest", "rusqlite"]);
    assert!(found.is_empty(), "the HTTP client or SQLite is named outside src/source/http_json:\n{}", found.join("\n"));
}

#[test]
fn nothing_outside_the_source_folder_names_a_kind_of_source() {
    // Each kind is a folder of src/source/; the registry is the one place that picks one. The rules
    // model says where a rule runs (databases or an endpoint), which only a kind and the loader read.
    let kinds: Vec<String> = std::fs::read_dir(src().join("source"))
        .expect("read src/source")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(kinds.len() >= 2, "expected a folder per kind in src/source, found {kinds:?}");
    let mut needles: Vec<String> = kinds.iter().map(|k| format!("source::{k}")).collect();
    needles.extend(["Placement::Endpoint", "Placement::Databases", "rule.endpoint"].map(String::from));
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    let outside: Vec<PathBuf> = rust_files(&src())
        .into_iter()
        .filter(|f| !f.starts_with(src().join("source")) && !f.starts_with(src().join("rules")))
        .collect();
    let found = offenders(&outside, &needles);
    assert!(found.is_empty(), "a kind of source is named outside src/source:\n{}", found.join("\n"));
}

#[test]
fn the_evaluation_modules_do_no_io_and_need_no_async_runtime() {
    let eval = rust_files(&src().join("eval"));
    assert!(!eval.is_empty());
    let found = offenders(
        &eval,
        &[
            "tokio",
            "async ",
            ".await",
            "std::fs",
            "std::net",
            "std::io",
            "std::process",
            "std::thread",
            "std::env",
            "Utc::now",
            "SystemTime::now",
            "Instant::now",
            "crate::source",
            "crate::run",
            "crate::publish",
            "crate::http",
            "crate::app",
            "crate::check",
        ],
    );
    assert!(found.is_empty(), "src/eval must stay pure (rows in, samples out):\n{}", found.join("\n"));
}

#[test]
fn top_level_modules_depend_only_down_the_layers() {
    let modules: BTreeSet<String> = rust_files(&src()).iter().filter_map(|f| top_module(f)).collect();
    let declared: BTreeSet<String> = LAYERS.iter().map(|(m, _)| m.to_string()).collect();
    assert_eq!(modules, declared, "every top-level module of src/ has its place in LAYERS, and no other");
    let mut wrong = Vec::new();
    for f in rust_files(&src()) {
        let Some(from) = top_module(&f) else { continue };
        let allowed = LAYERS.iter().find(|(m, _)| *m == from).map(|(_, a)| *a).unwrap_or_default();
        for (n, line) in code_lines(&f) {
            for (at, _) in line.match_indices("crate::") {
                let to: String = line[at + 7..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if to != from && modules.contains(&to) && !allowed.contains(&to.as_str()) {
                    wrong.push(format!("{}:{n}: {from} depends on {to}", f.display()));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "a dependency against the layer order (see LAYERS):\n{}", wrong.join("\n"));
}

/// The module path of a file (`src/source/postgres/mod.rs` → `source::postgres`, `src/lib.rs` → ``).
fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix(src()).expect("below src");
    let mut parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_string());
    }
    parts.join("::")
}

/// The file that holds module `path` or the longest prefix of it that is a module, if any.
fn file_of(path: &[&str], files: &BTreeMap<String, PathBuf>) -> Option<PathBuf> {
    (1..=path.len()).rev().find_map(|n| files.get(&path[..n].join("::")).cloned())
}

/// Every file of `src/` and the files it refers to (by `crate::`, `super::` or a child module's
/// name), tests left out: a module and its `#[cfg(test)]` code are one unit.
fn file_graph() -> BTreeMap<PathBuf, BTreeMap<PathBuf, usize>> {
    let all = rust_files(&src());
    let files: BTreeMap<String, PathBuf> = all
        .iter()
        .filter(|f| !matches!(f.file_name().and_then(|n| n.to_str()), Some("main.rs" | "build.rs" | "tests.rs")))
        .map(|f| (module_of(f), f.clone()))
        .collect();
    let mut graph = BTreeMap::new();
    for (module, file) in &files {
        let here: Vec<&str> = if module.is_empty() { Vec::new() } else { module.split("::").collect() };
        let text = std::fs::read_to_string(file).expect("read");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let children: BTreeSet<&str> = code
            .lines()
            .filter_map(|l| l.trim().trim_start_matches("pub ").strip_prefix("mod ")?.strip_suffix(';'))
            .collect();
        let mut edges = BTreeMap::new();
        for (n, line) in code.lines().enumerate() {
            let line = expand_groups(line.split("//").next().unwrap_or_default());
            for word in line.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')) {
                let segs: Vec<&str> = word.split("::").filter(|s| !s.is_empty()).collect();
                let target: Option<Vec<&str>> = match segs.first() {
                    Some(&"crate") => Some(segs[1..].to_vec()),
                    Some(&"super") if segs.iter().any(|s| *s != "super") => {
                        let ups = segs.iter().take_while(|s| **s == "super").count();
                        here.len()
                            .checked_sub(ups)
                            .map(|base| here[..base].iter().chain(&segs[ups..]).copied().collect())
                    }
                    Some(first) if segs.len() > 1 && children.contains(first) => {
                        Some(here.iter().chain(&segs).copied().collect())
                    }
                    _ => None,
                };
                let Some(to) = target.and_then(|t| file_of(&t, &files)) else { continue };
                if to != *file {
                    edges.entry(to).or_insert(n + 1);
                }
            }
        }
        graph.insert(file.clone(), edges);
    }
    graph
}

/// `use a::{b, c::d}` written out as `a::b a::c::d` (one level of braces), so each path is a word.
fn expand_groups(line: &str) -> String {
    let Some(open) = line.find("::{") else { return line.to_string() };
    let Some(close) = line[open..].find('}').map(|c| open + c) else { return line.to_string() };
    let start = line[..open].rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).map_or(0, |i| i + 1);
    let prefix = &line[start..open];
    let items: Vec<String> = line[open + 3..close].split(',').map(|i| format!("{prefix}::{}", i.trim())).collect();
    format!("{} {} {}", &line[..start], items.join(" "), expand_groups(&line[close + 1..]))
}

/// A cycle in `graph`, as the files along it, if there is one.
fn find_cycle(graph: &BTreeMap<PathBuf, BTreeMap<PathBuf, usize>>) -> Option<Vec<PathBuf>> {
    fn visit(
        node: &PathBuf,
        graph: &BTreeMap<PathBuf, BTreeMap<PathBuf, usize>>,
        path: &mut Vec<PathBuf>,
        done: &mut BTreeSet<PathBuf>,
    ) -> Option<Vec<PathBuf>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.clone());
            return Some(cycle);
        }
        if !done.insert(node.clone()) {
            return None;
        }
        path.push(node.clone());
        for next in graph.get(node).into_iter().flat_map(BTreeMap::keys) {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

/// A path as the repository names it (`src/run/evaluate.rs`).
fn shown(path: &Path) -> String {
    path.strip_prefix(src().parent().expect("the crate")).unwrap_or(path).display().to_string()
}

#[test]
fn no_cycle_between_files() {
    let graph = file_graph();
    assert!(graph.len() > 40, "expected every file of src/, found {}", graph.len());
    if let Some(cycle) = find_cycle(&graph) {
        let steps: Vec<String> =
            cycle.windows(2).map(|w| format!("{}:{} -> {}", shown(&w[0]), graph[&w[0]][&w[1]], shown(&w[1]))).collect();
        panic!("a cycle between files of src/ (a parent module counts as a file):\n{}", steps.join("\n"));
    }
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let (a, b, c) = (PathBuf::from("a"), PathBuf::from("b"), PathBuf::from("c"));
    let mut g = BTreeMap::new();
    g.insert(a.clone(), BTreeMap::from([(b.clone(), 1)]));
    g.insert(b.clone(), BTreeMap::from([(c.clone(), 1)]));
    g.insert(c.clone(), BTreeMap::new());
    assert_eq!(find_cycle(&g), None);
    g.insert(c.clone(), BTreeMap::from([(a.clone(), 1)]));
    assert_eq!(find_cycle(&g), Some(vec![a.clone(), b, c, a]));
}

#[test]
fn the_http_side_never_reaches_a_source_or_the_scheduler() {
    let http = rust_files(&src().join("http"));
    assert!(!http.is_empty());
    let found = offenders(&http, &["crate::source", "crate::run", "crate::check", "crate::app", "scheduler"]);
    assert!(found.is_empty(), "src/http must only read what was published:\n{}", found.join("\n"));
}
