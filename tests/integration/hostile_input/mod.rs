//! Hostile rules files: mutated valid files must never panic the loader, and every problem must come
//! with a line and column inside the file; and any input up to the size limit is answered fast.
//!
//! The property tests run in-process on the loader (`check_sources`, after the same size and UTF-8
//! checks as a file read from disk). `cargo test` runs a modest number of cases; for a long run:
//!
//! ```sh
//! PROPTEST_CASES=20000 cargo test --release --test integration hostile_input
//! ```
//!
//! The time bound (1 s per MiB) is asserted on the release binary only, since a debug build on busy
//! cores would make it flaky: `.ci/run` builds it and runs
//! `SSE_RELEASE_BIN=target/release/sql-signal-exporter cargo test --test integration hostile_input::release_`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::tool;
use proptest::prelude::*;
use sql_signal_exporter::rules::input::{check_text, MAX_FILE_BYTES};
use sql_signal_exporter::rules::{check_sources, LoadOptions};

mod shapes;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shipped() -> Vec<String> {
    ["rules/kanary.yaml", "rules/postgres.yaml", "tests/check_rules/helpers/backups.yaml"]
        .iter()
        .map(|p| std::fs::read_to_string(root().join(p)).expect("shipped rules file"))
        .collect()
}

/// Loads `bytes` as one rules file and checks every diagnostic is placed inside it.
fn assert_positioned(bytes: Vec<u8>) -> Result<(), TestCaseError> {
    let path = Path::new("mutated.yaml");
    // Lines as YAML counts them: `\n`, `\r\n` or a lone `\r` ends one.
    let lone_cr = bytes.iter().enumerate().filter(|&(i, &b)| b == b'\r' && bytes.get(i + 1) != Some(&b'\n')).count();
    let lines = bytes.split(|&b| b == b'\n').count() + lone_cr;
    let diags = match check_text(path, bytes.clone()) {
        Ok(text) => {
            let env = |_: &str| Some("postgresql://u@localhost/db".to_string());
            let opts = LoadOptions { env: std::sync::Arc::new(env), unset_env_is_error: false };
            check_sources(&[(path.to_path_buf(), text)], &opts).diagnostics
        }
        Err(refused) => vec![refused.into_diagnostic()],
    };
    for d in diags {
        let Some((line, col)) = d.position else {
            return Err(TestCaseError::fail(format!("no position: {d}")));
        };
        prop_assert!(line >= 1 && line <= lines && col >= 1, "outside the file ({lines} lines): {d}");
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    /// Replaces the value after the line's first `: ` (or the line's item) with another type.
    Retype(usize, usize),
    Bytes(usize, Vec<u8>),
    Nest(usize, usize),
    LongString(usize, usize),
    Anchors(usize, usize),
}

const VALUES: &[&str] = &[
    "[1, 2]",
    "{a: 1}",
    "true",
    "null",
    "~",
    "-1",
    "1e999",
    "\"\"",
    "&a x",
    "*a",
    "!!binary aGk=",
    "|\n  x",
    "[",
    "'",
    "{",
    "0x10",
    "\"${UNSET}\"",
    "\"{{ x\"",
    "1d",
    "- a",
    "? k",
    "&b [*b]",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
        (any::<usize>(), 0..VALUES.len()).prop_map(|(a, b)| Mutation::Retype(a, b)),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8)).prop_map(|(a, b)| Mutation::Bytes(a, b)),
        (any::<usize>(), 1usize..400).prop_map(|(a, d)| Mutation::Nest(a, d)),
        (any::<usize>(), 1usize..200_000).prop_map(|(a, n)| Mutation::LongString(a, n)),
        (any::<usize>(), 1usize..40).prop_map(|(a, n)| Mutation::Anchors(a, n)),
    ]
}

fn apply(text: &str, mutations: &[Mutation]) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = text.lines().map(|l| l.as_bytes().to_vec()).collect();
    for m in mutations {
        if lines.is_empty() {
            lines.push(Vec::new());
        }
        let n = lines.len();
        match m {
            Mutation::Delete(i) => {
                lines.remove(i % n);
            }
            Mutation::Duplicate(i) => {
                let line = lines[i % n].clone();
                lines.insert(i % n, line);
            }
            Mutation::Swap(a, b) => lines.swap(a % n, b % n),
            Mutation::Retype(i, v) => {
                let line = &mut lines[i % n];
                let at = line.windows(2).position(|w| w == b": ").map_or(line.len(), |p| p + 2);
                line.truncate(at);
                line.extend_from_slice(VALUES[*v].as_bytes());
            }
            Mutation::Bytes(i, bytes) => {
                let line = &mut lines[i % n];
                let at = i % (line.len() + 1);
                line.splice(at..at, bytes.iter().copied());
            }
            Mutation::Nest(i, depth) => {
                let value = format!("x: {}1{}", "[".repeat(*depth), "]".repeat(*depth));
                lines.insert(i % n, value.into_bytes());
            }
            Mutation::LongString(i, len) => {
                let line = &mut lines[i % n];
                line.extend_from_slice(b" \"");
                line.resize(line.len() + *len, b'a');
                line.push(b'"');
            }
            Mutation::Anchors(i, count) => {
                let mut block = vec![b"laughs:".to_vec(), b"  - &l0 [x, x, x, x, x, x, x, x, x]".to_vec()];
                for k in 1..*count {
                    let aliases = vec![format!("*l{}", k - 1); 9].join(", ");
                    block.push(format!("  - &l{k} [{aliases}]").into_bytes());
                }
                let at = i % (n + 1);
                lines.splice(at..at, block);
            }
        }
    }
    lines.join(&b'\n').into_iter().chain([b'\n']).collect()
}

/// A fixed seed in `cargo test`, so CI runs the same cases every time; a long run
/// (`PROPTEST_CASES`) explores new ones.
fn seed() -> proptest::test_runner::RngSeed {
    match std::env::var_os("PROPTEST_CASES") {
        Some(_) => proptest::test_runner::RngSeed::Random,
        None => proptest::test_runner::RngSeed::Fixed(20261201),
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), rng_seed: seed(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_rules_files_get_positioned_diagnostics(
        file in 0usize..3,
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let text = &shipped()[file];
        assert_positioned(apply(text, &mutations))?;
    }

    #[test]
    fn random_bytes_get_positioned_diagnostics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        assert_positioned(bytes)?;
    }
}

#[test]
fn every_shape_gets_positioned_diagnostics() {
    for (name, text) in shapes::all(64 * 1024) {
        assert_positioned(text.into_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn release_binary_answers_any_shape_within_a_second_per_mib() {
    let Some(bin) = std::env::var_os("SSE_RELEASE_BIN") else {
        // .ci/run runs this test on its own, on the release binary (a debug build on busy cores would
        // make the bound flaky), and skips it in the run of the whole suite.
        tool::missing(
            "the release binary (SSE_RELEASE_BIN)",
            "cargo build --release, then SSE_RELEASE_BIN=target/release/sql-signal-exporter cargo test --test \
             integration hostile_input::release_ (as .ci/run does)",
        );
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut worst = (Duration::ZERO, String::new());
    for (name, text) in shapes::all(MAX_FILE_BYTES - 4096) {
        assert!(text.len() <= MAX_FILE_BYTES, "{name} is {} bytes", text.len());
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, &text).expect("write");
        let started = Instant::now();
        let out = std::process::Command::new(&bin).arg("--check-rules").arg(&path).output().expect("run");
        let took = started.elapsed();
        assert!(matches!(out.status.code(), Some(0 | 1)), "{name}: {out:?}");
        eprintln!("{name}: {} bytes in {took:?}", text.len());
        if took > worst.0 {
            worst = (took, name.to_string());
        }
    }
    // Every file is at most 1 MiB, so each must be answered within a second.
    eprintln!("worst: {} in {:?}", worst.1, worst.0);
    assert!(worst.0 < Duration::from_secs(1), "{} took {:?}", worst.1, worst.0);
}
