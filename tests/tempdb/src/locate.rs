//! Finding the PostgreSQL binaries and whether this process is root.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// `$PG_BIN_DIR`, else the highest `/usr/lib/postgresql/<v>/bin` with
/// `initdb`, else the directory of `initdb` on `PATH`.
pub(crate) fn find_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN_DIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        if !is_executable(&dir.join("initdb")) {
            bail!("PG_BIN_DIR is {}, which has no executable initdb", dir.display());
        }
        return Ok(dir);
    }
    let mut best: Option<(Vec<u64>, PathBuf)> = None;
    if let Ok(entries) = fs::read_dir("/usr/lib/postgresql") {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(version) = name.to_str().and_then(parse_version) else {
                continue;
            };
            let bin = entry.path().join("bin");
            let better = match &best {
                Some((v, _)) => version > *v,
                None => true,
            };
            if better && is_executable(&bin.join("initdb")) {
                best = Some((version, bin));
            }
        }
    }
    if let Some((_, bin)) = best {
        return Ok(bin);
    }
    if let Some(initdb) = find_program("initdb", &[]) {
        // Follow symlinks (e.g. /usr/local/bin/initdb) to the directory that
        // also has pg_ctl and postgres.
        if let Ok(real) = fs::canonicalize(&initdb) {
            if let Some(dir) = real.parent() {
                if is_executable(&dir.join("pg_ctl")) && is_executable(&dir.join("postgres")) {
                    return Ok(dir.to_path_buf());
                }
            }
        }
        if let Some(dir) = initdb.parent() {
            return Ok(dir.to_path_buf());
        }
    }
    bail!(
        "no PostgreSQL server binaries found: set PG_BIN_DIR, install PostgreSQL \
         (Debian: `apt-get install postgresql`), or put initdb on PATH"
    )
}

/// "15" -> [15], "9.6" -> [9, 6].
pub(crate) fn parse_version(name: &str) -> Option<Vec<u64>> {
    name.split('.').map(|p| p.parse().ok()).collect()
}

pub(crate) fn find_psql(bin_dir: &Path) -> PathBuf {
    let candidate = bin_dir.join("psql");
    if is_executable(&candidate) {
        return candidate;
    }
    find_program("psql", &["/usr/bin/psql"]).unwrap_or_else(|| PathBuf::from("psql"))
}

/// The first executable of `candidates`, else `name` on `PATH`.
pub(crate) fn find_program(name: &str, candidates: &[&str]) -> Option<PathBuf> {
    for c in candidates {
        if is_executable(Path::new(c)) {
            return Some(PathBuf::from(c));
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| is_executable(p))
}

pub(crate) fn is_executable(path: &Path) -> bool {
    fs::metadata(path).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// The effective uid: the owner of `/proc/self`, else `id -u`.
pub(crate) fn effective_uid() -> Result<u32> {
    if let Ok(meta) = fs::metadata("/proc/self") {
        return Ok(meta.uid());
    }
    let out = Command::new("id")
        .arg("-u")
        .output()
        .context("running `id -u` to find out whether this process runs as root")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().with_context(|| format!("`id -u` printed {:?}, not a uid", text.trim()))
}
