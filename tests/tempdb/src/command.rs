//! Running the PostgreSQL tools: as the current user or as `postgres`, with a timeout, output captured.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::locate::{effective_uid, find_program};
use crate::{OS_USER, PG_ENV_VARS};

/// How server-side tools are run.
#[derive(Debug, Clone)]
pub(crate) enum Runner {
    /// As the current (non-root) user.
    Current,
    /// As root, through `runuser -u postgres --`.
    Runuser(PathBuf),
    /// As root, through `su postgres -s /bin/sh -c '...'`.
    Su(PathBuf),
}

impl Runner {
    pub(crate) fn detect() -> Result<Runner> {
        if effective_uid()? != 0 {
            return Ok(Runner::Current);
        }
        let known = Command::new("id")
            .args(["-u", OS_USER])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !known {
            bail!(
                "running as root, but there is no `{OS_USER}` system user to run PostgreSQL as \
                 (PostgreSQL refuses to run as root); create one (`useradd --system {OS_USER}`) \
                 or run as a non-root user"
            );
        }
        if let Some(runuser) = find_program("runuser", &["/usr/sbin/runuser", "/sbin/runuser"]) {
            return Ok(Runner::Runuser(runuser));
        }
        if let Some(su) = find_program("su", &["/usr/bin/su", "/bin/su"]) {
            return Ok(Runner::Su(su));
        }
        bail!("running as root, but neither `runuser` nor `su` was found to switch to `{OS_USER}`")
    }

    /// Whether commands run as another OS user (the `postgres` user).
    pub(crate) fn is_switching(&self) -> bool {
        !matches!(self, Runner::Current)
    }

    pub(crate) fn command(&self, program: &Path, args: &[OsString]) -> Command {
        match self {
            Runner::Current => {
                let mut cmd = Command::new(program);
                cmd.args(args);
                cmd
            }
            Runner::Runuser(runuser) => {
                let mut cmd = Command::new(runuser);
                cmd.args(["-u", OS_USER, "--"]).arg(program).args(args);
                cmd
            }
            Runner::Su(su) => {
                let mut line = String::from("exec ");
                line.push_str(&shell_quote(program.as_os_str()));
                for a in args {
                    line.push(' ');
                    line.push_str(&shell_quote(a));
                }
                let mut cmd = Command::new(su);
                cmd.args([OS_USER, "-s", "/bin/sh", "-c"]).arg(line);
                cmd
            }
        }
    }
}

/// What a finished command printed.
pub(crate) struct CmdOutput {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `cmd` to completion (at most `timeout`, then it is killed), feeding
/// it `stdin` and capturing its output. Only fails if the command could not
/// be run or timed out; a non-zero exit is the caller's to judge.
pub(crate) fn run_command(mut cmd: Command, what: &str, stdin: Option<&str>, timeout: Duration) -> Result<CmdOutput> {
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("could not run {what} ({:?})", cmd.get_program()))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let input = input.to_owned();
        // A thread, so a large input cannot deadlock against a full stdout.
        // Errors (the command exiting early) surface through its status.
        thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        });
    }
    let stdout_rx = spawn_reader(child.stdout.take());
    let stderr_rx = spawn_reader(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e).with_context(|| format!("waiting for {what}"));
            }
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = collect(&stderr_rx, Duration::from_millis(500));
            bail!(
                "{what} did not finish within {}s and was killed\n--- stderr ---\n{}",
                timeout.as_secs(),
                stderr.trim_end()
            );
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    };
    // A background process that inherited the pipes could keep them open
    // forever; don't wait for that.
    let stdout = collect(&stdout_rx, Duration::from_secs(5));
    let stderr = collect(&stderr_rx, Duration::from_secs(5));
    Ok(CmdOutput { status, stdout, stderr })
}

pub(crate) fn spawn_reader<R: Read + Send + 'static>(source: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut source) = source {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = source.read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
    }
    rx
}

pub(crate) fn collect(rx: &mpsc::Receiver<Vec<u8>>, wait: Duration) -> String {
    match rx.recv_timeout(wait) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(mpsc::RecvTimeoutError::Disconnected) => String::new(),
        Err(mpsc::RecvTimeoutError::Timeout) => "<output unavailable: still held open by another process>".to_owned(),
    }
}

pub(crate) fn clear_pg_env(cmd: &mut Command) {
    for var in PG_ENV_VARS {
        cmd.env_remove(var);
    }
}

/// Quotes `s` for `/bin/sh`.
pub(crate) fn shell_quote(s: &OsStr) -> String {
    format!("'{}'", s.to_string_lossy().replace('\'', "'\\''"))
}
