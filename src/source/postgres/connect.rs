//! New connections: our own pool manager, so each one can get a fresh password and our TLS.
//!
//! deadpool-postgres' manager connects with one fixed configuration; rotating credentials need the
//! password at connect time: `password_file` is re-read for every new connection (a mounted secret
//! changes under us), `password_command` runs for a new connection unless its last output is younger
//! than its cache TTL. Every password obtained is added to the strings the source scrubs, so a
//! message never shows the current one, nor an earlier one.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use deadpool_postgres::ClientWrapper;
use tokio_postgres::Config;

use super::tls::MakeRustls;
use crate::rules::model::PasswordSource;

pub(super) type Pool = managed::Pool<PgManager>;
pub(super) type Client = managed::Object<PgManager>;

pub(super) use super::error::ConnectError;

/// Strings no message may show; grows as passwords rotate.
pub(super) type Secrets = Arc<RwLock<Vec<String>>>;

pub(super) fn remember(secrets: &Secrets, s: &str) {
    if s.is_empty() {
        return;
    }
    if let Ok(mut list) = secrets.write() {
        if !list.iter().any(|k| k == s) {
            list.push(s.to_string());
        }
    }
}

pub(super) struct PgManager {
    pub(super) config: Config,
    pub(super) tls: MakeRustls,
    pub(super) password: PasswordSource,
    pub(super) secrets: Secrets,
    /// The last output of `password_command` and when it was made.
    cached: Mutex<Option<(String, Instant)>>,
}

impl PgManager {
    pub(super) fn new(config: Config, tls: MakeRustls, password: PasswordSource, secrets: Secrets) -> PgManager {
        PgManager { config, tls, password, secrets, cached: Mutex::new(None) }
    }

    async fn password(&self) -> Result<Option<String>, String> {
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
            last = crate::secret::redact(&last, s);
        }
        last.truncate(200);
        return Err(format!("password_command {program} failed ({}): {last}", out.status));
    }
    if password.is_empty() {
        return Err(format!("password_command {program} printed no password"));
    }
    Ok(password)
}

impl managed::Manager for PgManager {
    type Type = ClientWrapper;
    type Error = ConnectError;

    async fn create(&self) -> Result<ClientWrapper, ConnectError> {
        let mut config = self.config.clone();
        if let Some(pw) = self.password().await.map_err(ConnectError::Password)? {
            config.password(pw);
        }
        let (client, connection) = config.connect(self.tls.clone()).await.map_err(ConnectError::Driver)?;
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(ClientWrapper::new(client, task))
    }

    async fn recycle(&self, client: &mut ClientWrapper, _: &Metrics) -> RecycleResult<ConnectError> {
        if client.is_closed() {
            return Err(RecycleError::message("connection closed"));
        }
        // Verified before reuse: a half-open session (the peer gone without a word) fails here within
        // the pool's recycle timeout instead of costing a rule its whole timeout.
        match client.simple_query("").await {
            Ok(_) => Ok(()),
            Err(_) => Err(RecycleError::message("the session failed its check before reuse")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn manager(password: PasswordSource) -> PgManager {
        let (_, tls) = super::super::tls::plan(&Default::default()).unwrap();
        PgManager::new(Config::new(), tls, password, Secrets::default())
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
