//! Throwaway MariaDB servers, as [`crate::TempPostgres`] is for PostgreSQL: Debian's
//! `mariadb-server` (`mariadb-install-db`, `mariadbd`, `mariadb`) in a fresh temporary directory,
//! on a free loopback port, torn down on drop.
//!
//! What a started instance looks like:
//!
//! * data directory, unix socket and `error.log` in a fresh `ssx-my-<pid>-<n>-<rand>/` directory
//!   (under the same parent as PostgreSQL's: `/dev/shm` when roomy, else `/tmp`, or `$TEMPDB_DIR`);
//! * the server listens on `127.0.0.1` only (TCP) and on its unix socket, which the superuser
//!   `root` uses (no password: the socket is in a private directory); the binary log is off and
//!   the buffer pool small, since the data is thrown away;
//! * a login user `exporter` with a generated password, granted `SELECT`, `PROCESS` and
//!   `REPLICATION CLIENT` (what a monitoring user needs) and `CREATE TEMPORARY TABLES` (rule tests),
//!   nothing that writes a real table; a database
//!   `demo` exists at once;
//! * as root, the server runs as root (`--user=root`): MariaDB allows it, so no user switching.
//!
//! Servers of a process that died without dropping them are stopped by the next process that
//! starts one (their directory names carry the dead pid). Messages never contain the password.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::command::run_command;
use crate::dirs::parent_dir;
use crate::locate::{effective_uid, find_program};
use crate::util::{generate_password, log_tail, pick_and_reserve_port, random_u64, release_port, COUNTER};
use crate::{HOST, LOG_TAIL_LINES, REDACTED};

/// Prefix of MariaDB instance directories: `ssx-my-<pid>-<n>-<rand>`.
const MARIADB_DIR_PREFIX: &str = "ssx-my-";
/// The login user tests and the exporter connect as.
const MARIADB_EXPORTER_USER: &str = "exporter";
/// The database [`TempMariaDb::start`] creates.
const MARIADB_DEMO_DATABASE: &str = "demo";
/// How long `mariadb-install-db` and a start may take (two busy cores: seconds, not minutes).
const MARIADB_SETUP_TIMEOUT: Duration = Duration::from_secs(120);
/// Upper bound for one `mariadb` client run.
const MARIADB_CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// Options of a [`TempMariaDb`].
#[derive(Debug, Clone, Default)]
pub struct TempMariaDbOptions {
    /// Extra `mariadbd` options, e.g. `--ssl-cert=...`.
    pub server_args: Vec<String>,
}

/// A running throwaway MariaDB; stopped and deleted on drop.
pub struct TempMariaDb {
    root: PathBuf,
    port: u16,
    password: String,
    opts: TempMariaDbOptions,
    server: Mutex<Option<Child>>,
}

impl std::fmt::Debug for TempMariaDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TempMariaDb").field("root", &self.root).field("port", &self.port).finish_non_exhaustive()
    }
}

/// The MariaDB programs, found on `PATH` or where Debian puts them.
struct MariaDbPrograms {
    install_db: PathBuf,
    server: PathBuf,
    client: PathBuf,
}

impl MariaDbPrograms {
    fn find() -> Result<MariaDbPrograms> {
        let find = |name: &str, candidates: &[&str]| {
            find_program(name, candidates)
                .ok_or_else(|| anyhow!("`{name}` not found: install MariaDB (`apt-get install mariadb-server`)"))
        };
        Ok(MariaDbPrograms {
            install_db: find("mariadb-install-db", &["/usr/bin/mariadb-install-db"])?,
            server: find("mariadbd", &["/usr/sbin/mariadbd", "/usr/sbin/mysqld"])?,
            client: find("mariadb", &["/usr/bin/mariadb", "/usr/bin/mysql"])?,
        })
    }
}

impl TempMariaDb {
    /// Whether MariaDB's programs are installed (tests skip or fail on that, see the harness).
    pub fn available() -> bool {
        MariaDbPrograms::find().is_ok()
    }

    /// A fresh server with the default options.
    pub fn start() -> Result<TempMariaDb> {
        TempMariaDb::start_with(TempMariaDbOptions::default())
    }

    /// A fresh server: a data directory, a start on a free port, the `exporter` user and `demo`.
    pub fn start_with(opts: TempMariaDbOptions) -> Result<TempMariaDb> {
        static SWEEP: Once = Once::new();
        SWEEP.call_once(sweep_stale_mariadb);
        let programs = MariaDbPrograms::find()?;
        let root = create_mariadb_dir(parent_dir())?;
        let port = pick_and_reserve_port()?;
        let db = TempMariaDb { root, port, password: generate_password(), opts, server: Mutex::new(None) };
        let mut install = Command::new(&programs.install_db);
        install.args(["--no-defaults", "--skip-test-db", "--auth-root-authentication-method=normal"]);
        install.arg(format!("--datadir={}", db.data_dir().display()));
        if is_root() {
            install.arg("--user=root");
        }
        let out = run_command(install, "mariadb-install-db", None, MARIADB_SETUP_TIMEOUT)?;
        if !out.status.success() {
            bail!("mariadb-install-db failed ({}):\n{}{}", out.status, out.stdout, out.stderr);
        }
        db.start_server()?;
        let pw = &db.password;
        db.mariadb(
            "mysql",
            &format!(
                "CREATE USER '{MARIADB_EXPORTER_USER}'@'%' IDENTIFIED BY '{pw}';\n\
                 GRANT SELECT, PROCESS, REPLICATION CLIENT, CREATE TEMPORARY TABLES ON *.* TO '{MARIADB_EXPORTER_USER}'@'%';\n\
                 CREATE DATABASE {MARIADB_DEMO_DATABASE};"
            ),
        )
        .map_err(|e| anyhow!("{}", db.redact(&e.to_string())))?;
        Ok(db)
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    fn socket(&self) -> PathBuf {
        self.root.join("mariadb.sock")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn error_log(&self) -> PathBuf {
        self.root.join("error.log")
    }

    /// Starts `mariadbd` and waits until it answers on its socket.
    fn start_server(&self) -> Result<()> {
        let programs = MariaDbPrograms::find()?;
        fs::create_dir_all(self.tmp_dir()).with_context(|| format!("could not create {}", self.tmp_dir().display()))?;
        let mut args: Vec<OsString> = vec![
            "--no-defaults".into(),
            format!("--datadir={}", self.data_dir().display()).into(),
            format!("--socket={}", self.socket().display()).into(),
            format!("--pid-file={}", self.root.join("mariadb.pid").display()).into(),
            format!("--log-error={}", self.error_log().display()).into(),
            // Its own temporary directory: a server sharing `/tmp` with others was seen failing to
            // delete its `#sql-temptable-*` files there.
            format!("--tmpdir={}", self.tmp_dir().display()).into(),
            format!("--bind-address={HOST}").into(),
            format!("--port={}", self.port).into(),
            "--skip-log-bin".into(),
            "--skip-name-resolve".into(),
            "--innodb-buffer-pool-size=32M".into(),
            "--innodb-log-file-size=16M".into(),
            "--innodb-flush-log-at-trx-commit=0".into(),
            "--performance-schema=ON".into(),
        ];
        if is_root() {
            args.push("--user=root".into());
        }
        args.extend(self.opts.server_args.iter().map(OsString::from));
        let child = Command::new(&programs.server)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("could not run {}", programs.server.display()))?;
        *self.server.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        let deadline = Instant::now() + MARIADB_SETUP_TIMEOUT;
        let mut pause = Duration::from_millis(20);
        loop {
            if self.mariadb("mysql", "SELECT 1").is_ok() {
                return Ok(());
            }
            let exited = self
                .server
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                bail!("mariadbd exited ({status}) while starting:\n{}", log_tail(&self.error_log(), LOG_TAIL_LINES));
            }
            if Instant::now() >= deadline {
                bail!(
                    "mariadbd did not answer within {}s:\n{}",
                    MARIADB_SETUP_TIMEOUT.as_secs(),
                    log_tail(&self.error_log(), LOG_TAIL_LINES)
                );
            }
            // Polling the condition (the server answers), with a growing pause.
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `exporter` user's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The `exporter` user's DSN for `database`: `mysql://exporter:PW@127.0.0.1:PORT/DATABASE`.
    pub fn dsn(&self, database: &str) -> String {
        format!("mysql://{MARIADB_EXPORTER_USER}:{}@{HOST}:{}/{database}", self.password, self.port)
    }

    /// The `exporter` user's name.
    pub fn user(&self) -> &'static str {
        MARIADB_EXPORTER_USER
    }

    /// The database [`TempMariaDb::start`] created.
    pub fn demo_database(&self) -> &'static str {
        MARIADB_DEMO_DATABASE
    }

    /// Runs `sql` as `root` in `database` with the `mariadb` client (batch mode: tab-separated rows,
    /// no header); its output.
    pub fn mariadb(&self, database: &str, sql: &str) -> Result<String> {
        let programs = MariaDbPrograms::find()?;
        let mut cmd = Command::new(&programs.client);
        cmd.args(["--no-defaults", "--batch", "--skip-column-names", "--user=root"])
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--database={database}"));
        let out = run_command(cmd, "mariadb", Some(sql), MARIADB_CLIENT_TIMEOUT)?;
        if !out.status.success() {
            bail!("mariadb failed ({}): {}", out.status, self.redact(out.stderr.trim()));
        }
        Ok(out.stdout)
    }

    /// Creates an empty database `name`.
    pub fn create_database(&self, name: &str) -> Result<()> {
        self.mariadb("mysql", &format!("CREATE DATABASE `{}`", name.replace('`', "``"))).map(|_| ())
    }

    /// Stops the server (it keeps its port and data, for [`TempMariaDb::restart`]).
    pub fn stop(&self) -> Result<()> {
        let child = self.server.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut child) = child {
            // SIGTERM: a clean shutdown, so a restart needs no recovery.
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let deadline = Instant::now() + MARIADB_SETUP_TIMEOUT;
            loop {
                if child.try_wait().context("waiting for mariadbd")?.is_some() {
                    break;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Starts the stopped server again, on the same port with the same data.
    pub fn restart(&self) -> Result<()> {
        self.stop()?;
        self.start_server()
    }

    /// Hands the server to an exit hook and returns a reference that lives as long as the process
    /// (one server per test process).
    pub fn keep_until_exit(self) -> &'static TempMariaDb {
        let kept: &'static TempMariaDb = Box::leak(Box::new(self));
        crate::exit::at_exit(Box::new(move || kept.teardown()));
        kept
    }

    fn teardown(&self) {
        let _ = self.stop();
        release_port(self.port);
        let _ = fs::remove_dir_all(&self.root);
    }

    fn redact(&self, text: &str) -> String {
        text.replace(&self.password, REDACTED)
    }
}

impl Drop for TempMariaDb {
    fn drop(&mut self) {
        self.teardown();
    }
}

fn is_root() -> bool {
    effective_uid().is_ok_and(|u| u == 0)
}

fn create_mariadb_dir(parent: &Path) -> Result<PathBuf> {
    let pid = std::process::id();
    for _ in 0..50 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = parent.join(format!("{MARIADB_DIR_PREFIX}{pid}-{n}-{:04x}", random_u64() & 0xffff));
        match fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating directory {}", path.display())),
        }
    }
    bail!("could not create a fresh directory under {}", parent.display())
}

/// Stops the servers and removes the directories of processes that died without dropping theirs.
fn sweep_stale_mariadb() {
    let Ok(entries) = fs::read_dir(parent_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(MARIADB_DIR_PREFIX).and_then(|r| r.split('-').next()) else { continue };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dir = entry.path();
        if let Some(server) =
            fs::read_to_string(dir.join("mariadb.pid")).ok().and_then(|t| t.trim().parse::<u32>().ok())
        {
            // Only a process whose command line names this directory (a reused pid is never hit).
            let cmdline = fs::read(format!("/proc/{server}/cmdline")).unwrap_or_default();
            let needle = dir.to_string_lossy().into_owned();
            if String::from_utf8_lossy(&cmdline).contains(&needle) {
                let _ = Command::new("kill").args(["-KILL", &server.to_string()]).status();
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }
}
