//! Passwords of new connections, for every kind of source with a server: `password_file` is
//! re-read for every new connection (a mounted secret changes under us), `password_command` runs
//! for a new connection unless its last output is younger than its cache TTL. Every password
//! obtained is added to the strings the source scrubs ([`Secrets`]), so a message never shows the
//! current one, nor an earlier one.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use crate::rules::model::PasswordSource;
use crate::secret::redact;

/// Strings no message may show; grows as passwords rotate.
pub(crate) type Secrets = Arc<RwLock<Vec<String>>>;

pub(crate) fn remember(secrets: &Secrets, s: &str) {
    if s.is_empty() {
        return;
    }
    if let Ok(mut list) = secrets.write() {
        if !list.iter().any(|k| k == s) {
            list.push(s.to_string());
        }
    }
}

/// Where a source's new connections get their password, and every password seen so far.
pub(crate) struct Credentials {
    pub(crate) password: PasswordSource,
    pub(crate) secrets: Secrets,
    /// The last output of `password_command` and when it was made.
    cached: Mutex<Option<(String, Instant)>>,
}

impl Credentials {
    pub(crate) fn new(password: PasswordSource, secrets: Secrets) -> Credentials {
        Credentials { password, secrets, cached: Mutex::new(None) }
    }

    /// The password for a new connection; `None` when the DSN's is used.
    pub(crate) async fn password(&self) -> Result<Option<String>, String> {
        let password = match &self.password {
            PasswordSource::Dsn => return Ok(None),
            PasswordSource::File(path) => {
                let text = tokio::fs::read_to_string(path)
                    .await
                    .map_err(|e| format!("cannot read password_file {}: {e}", path.display()))?;
                let pw = text.trim_end_matches(['\n', '\r']).to_string();
                if pw.is_empty() {
                    return Err(format!("password_file {} is empty", path.display()));
                }
                pw
            }
            PasswordSource::Command { argv, timeout, cache_ttl } => {
                if let Ok(guard) = self.cached.lock() {
                    if let Some((pw, _)) = guard.as_ref().filter(|(_, at)| at.elapsed() < *cache_ttl) {
                        return Ok(Some(pw.clone()));
                    }
                }
                let pw = run_command(argv, *timeout, &self.secrets).await?;
                if let Ok(mut guard) = self.cached.lock() {
                    *guard = Some((pw.clone(), Instant::now()));
                }
                pw
            }
        };
        remember(&self.secrets, &password);
        Ok(Some(password))
    }
}

/// Runs the program (no shell) and returns its first line of output. Errors name the program and
/// its exit status, with the last line of its standard error scrubbed; never its output.
async fn run_command(argv: &[String], timeout: std::time::Duration, secrets: &Secrets) -> Result<String, String> {
    let program = argv.first().map(String::as_str).unwrap_or_default();
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let out = match tokio::time::timeout(timeout, cmd.output()).await {
        Err(_) => {
            return Err(format!(
                "password_command {program} did not finish within {}",
                humantime::format_duration(timeout)
            ))
        }
        Ok(Err(e)) => return Err(format!("cannot run password_command {program}: {e}")),
        Ok(Ok(out)) => out,
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let password = stdout.lines().next().unwrap_or_default().trim().to_string();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default().to_string();
        for s in secrets.read().map(|l| l.clone()).unwrap_or_default().iter().chain([&password]) {
            last = redact(&last, s);
        }
        last.truncate(200);
        return Err(format!("password_command {program} failed ({}): {last}", out.status));
    }
    if password.is_empty() {
        return Err(format!("password_command {program} printed no password"));
    }
    Ok(password)
}

/// `text` with every string of `secrets` removed, longest first (so a password inside the DSN
/// does not leave the rest of the DSN behind).
pub(crate) fn scrub(secrets: &Secrets, text: &str) -> String {
    let mut out = text.to_string();
    let mut list = secrets.read().map(|l| l.clone()).unwrap_or_default();
    list.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in &list {
        out = redact(&out, s);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn manager(password: PasswordSource) -> Credentials {
        Credentials::new(password, Secrets::default())
    }

    #[tokio::test]
    async fn a_rotated_file_is_read_again_and_every_password_is_scrubbed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "first-secret\n").unwrap();
        let m = manager(PasswordSource::File(path.clone()));
        assert_eq!(m.password().await.unwrap().as_deref(), Some("first-secret"));
        std::fs::write(&path, "second-secret").unwrap();
        assert_eq!(m.password().await.unwrap().as_deref(), Some("second-secret"));
        assert_eq!(*m.secrets.read().unwrap(), vec!["first-secret".to_string(), "second-secret".to_string()]);
        std::fs::write(&path, "\n").unwrap();
        assert!(m.password().await.unwrap_err().contains("is empty"));
    }

    #[tokio::test]
    async fn the_command_runs_once_per_ttl_and_its_failure_shows_no_output() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let script = format!("echo run >> {}; echo token-abc", runs.display());
        let argv = vec!["sh".to_string(), "-c".to_string(), script];
        let m = manager(PasswordSource::Command {
            argv,
            timeout: Duration::from_secs(5),
            cache_ttl: Duration::from_secs(60),
        });
        assert_eq!(m.password().await.unwrap().as_deref(), Some("token-abc"));
        assert_eq!(m.password().await.unwrap().as_deref(), Some("token-abc"));
        assert_eq!(std::fs::read_to_string(&runs).unwrap().lines().count(), 1, "cached within the TTL");

        let failing = vec!["sh".into(), "-c".into(), "echo token-xyz; echo 'bad token-xyz' >&2; exit 3".into()];
        let m = manager(PasswordSource::Command {
            argv: failing,
            timeout: Duration::from_secs(5),
            cache_ttl: Duration::from_secs(1),
        });
        let e = m.password().await.unwrap_err();
        assert!(e.contains("failed") && !e.contains("token-xyz"), "{e}");
        let slow = vec!["sleep".into(), "5".into()];
        let m = manager(PasswordSource::Command {
            argv: slow,
            timeout: Duration::from_millis(200),
            cache_ttl: Duration::from_secs(1),
        });
        assert!(m.password().await.unwrap_err().contains("did not finish"));
    }
}
