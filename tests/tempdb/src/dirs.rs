//! Instance directories: where they go, creating and removing them, and sweeping stale ones.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::command::{clear_pg_env, run_command, Runner};
use crate::util::{random_u64, COUNTER};
use crate::{DIR_ENV, DIR_PREFIX, MAX_SOCKET_PATH, SHM_MIN_FREE_KIB, SHM_ROOT, TMP_ROOT};

/// The parent of instance directories, chosen once per process.
static PARENT_DIR: OnceLock<PathBuf> = OnceLock::new();

/// `$TEMPDB_DIR` if set, else `/dev/shm` if it is a writable directory
/// with room, else `/tmp`.
pub(crate) fn parent_dir() -> &'static Path {
    PARENT_DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os(DIR_ENV).filter(|d| !d.is_empty()) {
            return PathBuf::from(dir);
        }
        if shm_is_roomy() {
            PathBuf::from(SHM_ROOT)
        } else {
            PathBuf::from(TMP_ROOT)
        }
    })
}

/// Whether `/dev/shm` is a world-writable directory with at least
/// [`SHM_MIN_FREE_KIB`] available (`df -Pk`, as std has no statvfs).
pub(crate) fn shm_is_roomy() -> bool {
    let writable =
        fs::metadata(SHM_ROOT).map(|m| m.is_dir() && m.permissions().mode() & 0o1777 == 0o1777).unwrap_or(false);
    if !writable {
        return false;
    }
    let Ok(out) = Command::new("df").args(["-Pk", SHM_ROOT]).stderr(Stdio::null()).output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    // "Filesystem 1024-blocks Used Available Capacity Mounted-on", then values.
    let available = text.lines().nth(1).and_then(|l| l.split_whitespace().nth(3)).and_then(|v| v.parse::<u64>().ok());
    out.status.success() && available.is_some_and(|kib| kib >= SHM_MIN_FREE_KIB)
}

pub(crate) fn create_instance_dir(parent: &Path) -> Result<PathBuf> {
    let pid = std::process::id();
    // "<dir>/.s.PGSQL.65535" must fit into a unix socket address.
    let longest_socket = parent.as_os_str().len() + 1 + DIR_PREFIX.len() + 40 + 16;
    if longest_socket > MAX_SOCKET_PATH {
        bail!(
            "{} is too long a directory for PostgreSQL's unix socket (paths are limited to \
             {MAX_SOCKET_PATH} bytes); set {DIR_ENV} to a shorter one",
            parent.display()
        );
    }
    let mut last_err = None;
    for _ in 0..50 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = parent.join(format!("{DIR_PREFIX}{pid}-{n}-{:04x}", random_u64() & 0xffff));
        match fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last_err = Some(e),
            Err(e) => return Err(e).with_context(|| format!("creating directory {}", path.display())),
        }
    }
    Err(anyhow!("could not create a fresh directory under {}: {last_err:?}", parent.display()))
}

/// Removes an instance directory, best effort, without panicking.
pub(crate) fn remove_instance_dir(root: &Path, runner: &Runner) {
    if !root.exists() {
        return;
    }
    if let Err(e) = fs::remove_dir_all(root) {
        if runner.is_switching() {
            // Root without CAP_DAC_OVERRIDE: let the owner delete its files.
            let cmd = runner.command(Path::new("rm"), &["-rf".into(), root.as_os_str().into()]);
            let _ = run_command(cmd, "rm", None, Duration::from_secs(30));
            let _ = fs::remove_dir_all(root);
        }
        if root.exists() {
            tracing::warn!(dir = %root.display(), error = %e, "could not remove temporary PostgreSQL directory");
        }
    }
}

/// Last resort when `pg_ctl stop` did not work: SIGKILL the postmaster named
/// in `postmaster.pid`, but only if its command line names this data
/// directory (so a reused pid is never hit).
pub(crate) fn kill_postmaster(data_dir: &Path) {
    let Ok(text) = fs::read_to_string(data_dir.join("postmaster.pid")) else {
        return;
    };
    let Some(pid) = text.lines().next().and_then(|l| l.trim().parse::<u32>().ok()) else {
        return;
    };
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return;
    };
    let needle = data_dir.as_os_str().as_bytes();
    if cmdline.windows(needle.len()).any(|w| w == needle) {
        let _ =
            Command::new("kill").args(["-KILL", &pid.to_string()]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

/// Stops the servers and removes the directories left behind by processes
/// that died without dropping their instances.
pub(crate) fn sweep_stale_instances(bin_dir: &Path, runner: &Runner) {
    let mut parents = vec![PathBuf::from(SHM_ROOT), PathBuf::from(TMP_ROOT)];
    let chosen = parent_dir().to_path_buf();
    if !parents.contains(&chosen) {
        parents.push(chosen);
    }
    for parent in parents {
        sweep_stale_instances_in(&parent, bin_dir, runner);
    }
}

pub(crate) fn sweep_stale_instances_in(parent: &Path, bin_dir: &Path, runner: &Runner) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    let me = std::process::id();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let root = entry.path();
        let data_dir = root.join("data");
        if data_dir.join("postmaster.pid").exists() {
            let mut cmd = runner.command(
                &bin_dir.join("pg_ctl"),
                &[
                    "stop".into(),
                    "-m".into(),
                    "immediate".into(),
                    "-w".into(),
                    "-t".into(),
                    "10".into(),
                    "-D".into(),
                    data_dir.clone().into_os_string(),
                ],
            );
            clear_pg_env(&mut cmd);
            cmd.current_dir(parent);
            let _ = run_command(cmd, "pg_ctl stop", None, Duration::from_secs(20));
            if data_dir.join("postmaster.pid").exists() {
                kill_postmaster(&data_dir);
            }
        }
        tracing::debug!(dir = %root.display(), "removing stale temporary PostgreSQL directory");
        remove_instance_dir(&root, runner);
    }
}
