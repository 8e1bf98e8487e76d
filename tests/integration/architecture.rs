//! Architecture invariants of `src/`, each stated in the README's code map, checked on the source text.
//!
//! These read the code, not run it: a module that starts to depend on another it must not fails here
//! with the file and line, before anyone reviews it.

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

#[test]
fn only_source_postgres_names_the_postgresql_driver_or_pool_crates() {
    let outside: Vec<PathBuf> =
        rust_files(&src()).into_iter().filter(|f| !f.starts_with(src().join("source/postgres"))).collect();
    let found = offenders(&outside, &["tokio_postgres", "deadpool", "postgres_types", "postgres_protocol"]);
    assert!(found.is_empty(), "the PostgreSQL driver is named outside src/source/postgres:\n{}", found.join("\n"));
}

#[test]
fn only_source_http_names_the_http_client_or_sqlite_crates() {
    let outside: Vec<PathBuf> =
        rust_files(&src()).into_iter().filter(|f| !f.starts_with(src().join("source/http"))).collect();
    let found = offenders(&outside, &["reqwest", "rusqlite"]);
    assert!(found.is_empty(), "the HTTP client or SQLite is named outside src/source/http:\n{}", found.join("\n"));
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
            "crate::serve",
            "crate::check",
        ],
    );
    assert!(found.is_empty(), "src/eval must stay pure (rows in, samples out):\n{}", found.join("\n"));
}

#[test]
fn no_cycle_between_top_level_modules() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut evidence: BTreeMap<(String, String), String> = BTreeMap::new();
    let files = rust_files(&src());
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top_module(f)).collect();
    for f in &files {
        let Some(from) = top_module(f) else { continue };
        graph.entry(from.clone()).or_default();
        for (n, line) in code_lines(f) {
            for (at, _) in line.match_indices("crate::") {
                let rest = &line[at + "crate::".len()..];
                let to: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if to != from && modules.contains(&to) {
                    graph.entry(from.clone()).or_default().insert(to.clone());
                    evidence.entry((from.clone(), to)).or_insert_with(|| format!("{}:{n}", f.display()));
                }
            }
        }
    }
    assert!(graph.len() >= 6, "expected the top-level modules of src/, found {:?}", graph.keys());
    // Depth-first search for a back edge.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            let edges: Vec<String> = cycle
                .windows(2)
                .map(|w| format!("{} -> {} ({})", w[0], w[1], evidence[&(w[0].clone(), w[1].clone())]))
                .collect();
            panic!("a cycle between top-level modules:\n{}", edges.join("\n"));
        }
    }
    // The intended order, bottom up; an edge pointing up this list is a layering mistake.
    let order = ["secret", "logging", "rules", "eval", "source", "check", "serve"];
    for (from, tos) in &graph {
        let Some(fi) = order.iter().position(|m| m == from) else { panic!("module {from} is not in the layer list") };
        for to in tos {
            let ti = order.iter().position(|m| m == to).expect("known module");
            assert!(ti < fi, "{from} depends on {to}, which sits above it ({})", evidence[&(from.clone(), to.clone())]);
        }
    }
}

#[test]
fn the_scrape_handlers_never_reach_a_source_or_the_scheduler() {
    let http = [src().join("serve/http.rs")];
    let found = offenders(&http, &["crate::source", "scheduler", "evaluate", "tokio_postgres"]);
    assert!(found.is_empty(), "serve/http.rs must only read the snapshot:\n{}", found.join("\n"));
}

#[test]
fn no_source_file_is_over_400_lines_before_its_tests() {
    let mut long = Vec::new();
    for f in rust_files(&src()) {
        let text = std::fs::read_to_string(&f).expect("read");
        let lines = text.lines().take_while(|l| !l.trim_start().starts_with("#[cfg(test)]")).count();
        if lines > 400 {
            long.push(format!("{}: {lines} lines", f.display()));
        }
    }
    assert!(long.is_empty(), "split these files by concern:\n{}", long.join("\n"));
}
