//! Byte-for-byte expectations as checked-in files under `tests/integration/golden/`, rewritten from
//! the actual output when `UPDATE_GOLDEN=1` (as node_exporter does with its end-to-end fixture).

use std::path::PathBuf;

/// Set to `1` to rewrite the golden files instead of comparing with them.
pub const UPDATE_ENV: &str = "UPDATE_GOLDEN";

fn path(name: &str) -> PathBuf {
    super::repo_root().join("tests/integration/golden").join(name)
}

fn updating() -> bool {
    std::env::var(UPDATE_ENV).is_ok_and(|v| v == "1")
}

/// The contents of golden file `name`.
pub fn read(name: &str) -> String {
    let p = path(name);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}; create it with {UPDATE_ENV}=1 cargo test --test integration", p.display()))
}

/// Asserts that `actual` equals golden file `name`; with `UPDATE_GOLDEN=1` writes `actual` to it
/// instead. Only one test should `check` a given file; others compare with [`read`].
pub fn check(name: &str, actual: &str) {
    if updating() {
        let p = path(name);
        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, actual).expect("write the golden file");
        std::fs::rename(&tmp, &p).expect("rename the golden file");
        eprintln!("rewrote {}", p.display());
        return;
    }
    assert_eq!(
        actual,
        read(name),
        "the output differs from tests/integration/golden/{name}; after a deliberate change rewrite it with \
         {UPDATE_ENV}=1 cargo test --test integration"
    );
}
