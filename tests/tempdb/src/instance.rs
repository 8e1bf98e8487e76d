//! The [`TempPostgres`] handle: its public API, teardown and error text.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Once;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::command::{clear_pg_env, run_command, CmdOutput, Runner};
use crate::dirs::{create_instance_dir, kill_postmaster, parent_dir, remove_instance_dir, sweep_stale_instances};
use crate::locate::{find_bin_dir, find_psql};
use crate::util::{generate_password, log_tail, percent_encode, quote_ident, release_port};
use crate::{EXPORTER_ROLE, HOST, LOG_TAIL_LINES, PSQL_TIMEOUT, REDACTED, STOP_TIMEOUT_SECS, SUPERUSER};

/// The stale-instance sweep runs once per process.
static SWEEP: Once = Once::new();

/// Options for [`TempPostgres::start_with`].
#[derive(Debug, Clone, Default)]
pub struct TempPostgresOptions {
    /// Port to listen on (on `127.0.0.1`). `None` picks a free port (and
    /// retries with another one if it got taken before the server bound it).
    pub port: Option<u16>,
    /// Lines appended verbatim to `postgresql.conf`, after the settings made
    /// here, so they win over them.
    pub extra_conf: Vec<String>,
    /// Preload `pg_stat_statements` (with `pg_stat_statements.track = all`)
    /// and `CREATE EXTENSION pg_stat_statements` in `postgres`, in `demo` and
    /// in every database made by [`TempPostgres::create_database`].
    pub pg_stat_statements: bool,
}

/// A private, throwaway PostgreSQL server (see the module docs).
///
/// Owns its temporary directory (data directory, socket, `postgres.log`) and
/// the server process. Dropping it stops the server (`pg_ctl stop -m
/// immediate`) and deletes the directory; neither step can panic.
pub struct TempPostgres {
    /// `<parent>/ssx-pg-...`: holds everything below; the socket directory.
    pub(crate) root: PathBuf,
    /// `<root>/data`.
    pub(crate) data_dir: PathBuf,
    /// `<root>/postgres.log`.
    pub(crate) log_file: PathBuf,
    /// Directory holding `initdb`, `pg_ctl`, `postgres`.
    pub(crate) bin_dir: PathBuf,
    /// The `psql` to run.
    pub(crate) psql_bin: PathBuf,
    /// How server-side commands are run (directly or as `postgres`).
    pub(crate) runner: Runner,
    /// The port, 0 until one was chosen.
    pub(crate) port: u16,
    /// Password of role `exporter`.
    pub(crate) password: String,
    /// Password of the superuser `postgres`.
    pub(crate) superuser_password: String,
    /// Whether `pg_stat_statements` is set up.
    pub(crate) pg_stat_statements: bool,
}

impl TempPostgres {
    /// Starts a server with the default [`TempPostgresOptions`]: a free port,
    /// no extra configuration, no `pg_stat_statements`.
    ///
    /// On return the server accepts connections, role `exporter` exists with
    /// [`password`](Self::password), and database `demo` exists.
    pub fn start() -> Result<TempPostgres> {
        Self::start_with(TempPostgresOptions::default())
    }

    /// Starts a server with the given options (see [`start`](Self::start)).
    ///
    /// Errors carry the failing command's stderr and the last lines of
    /// `postgres.log`, never a password.
    pub fn start_with(opts: TempPostgresOptions) -> Result<TempPostgres> {
        let started_at = Instant::now();
        let bin_dir = find_bin_dir()?;
        let runner = Runner::detect()?;
        SWEEP.call_once(|| sweep_stale_instances(&bin_dir, &runner));
        let psql_bin = find_psql(&bin_dir);
        let root = create_instance_dir(parent_dir())?;
        // From here on `Drop` cleans up whatever exists if a step fails.
        let mut pg = TempPostgres {
            data_dir: root.join("data"),
            log_file: root.join("postgres.log"),
            root,
            bin_dir,
            psql_bin,
            runner,
            port: 0,
            password: generate_password(),
            superuser_password: generate_password(),
            pg_stat_statements: opts.pg_stat_statements,
        };
        pg.initdb()?;
        pg.write_config(&opts)?;
        pg.start_on_some_port(opts.port)?;
        pg.bootstrap()?;
        tracing::debug!(
            dir = %pg.root.display(),
            port = pg.port,
            elapsed_ms = started_at.elapsed().as_millis() as u64,
            "temporary PostgreSQL started"
        );
        Ok(pg)
    }

    /// The TCP port the server listens on (on [`host`](Self::host)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address the server listens on: always `"127.0.0.1"`.
    pub fn host(&self) -> &str {
        HOST
    }

    /// Connection URL for role `exporter` — the role tests and the exporter
    /// connect as:
    /// `postgresql://exporter:<password>@127.0.0.1:<port>/<database>?sslmode=disable`.
    ///
    /// It contains the password: never put it into an error or a log line.
    pub fn dsn(&self, database: &str) -> String {
        self.url(EXPORTER_ROLE, &self.password, database)
    }

    /// Connection URL for the bootstrap superuser `postgres` (password
    /// authentication too), same form as [`dsn`](Self::dsn).
    pub fn superuser_dsn(&self, database: &str) -> String {
        self.url(SUPERUSER, &self.superuser_password, database)
    }

    /// The generated password of role `exporter` (32 hex digits, from the
    /// OS-seeded std hasher mixed with time and pid).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Stops the server (`pg_ctl stop -m fast`), keeping the data directory
    /// and port, e.g. for "database is down" tests. Stopping a stopped server
    /// is a no-op. [`restart`](Self::restart) brings it back.
    pub fn stop(&mut self) -> Result<()> {
        if !self.is_running() {
            return Ok(());
        }
        let out = self.pg_ctl(
            &["stop", "-m", "fast", "-w", "-t", &STOP_TIMEOUT_SECS.to_string()],
            Duration::from_secs(STOP_TIMEOUT_SECS + 15),
        )?;
        if !out.status.success() {
            return Err(self.failure("pg_ctl stop", Some(&out)));
        }
        Ok(())
    }

    /// Starts the server again on the *same* port with the same data (stops
    /// it first if it is running). Fails — with the log tail — if the port
    /// has been taken in the meantime.
    pub fn restart(&mut self) -> Result<()> {
        if self.is_running() {
            self.stop()?;
        }
        self.pg_ctl_start().map_err(|e| e.error)
    }

    /// Whether the server is running (`pg_ctl status`).
    pub fn is_running(&self) -> bool {
        if !self.data_dir.join("postmaster.pid").exists() {
            return false;
        }
        match self.pg_ctl(&["status"], Duration::from_secs(15)) {
            Ok(out) => out.status.success(),
            Err(_) => false,
        }
    }

    /// Runs `sql` with `psql` as the superuser in `database` and returns its
    /// standard output without the final newline (`-X -q -At -v
    /// ON_ERROR_STOP=1`: one line per row, columns separated by `|`). The SQL
    /// goes through standard input, so it may hold several statements,
    /// including ones that cannot run in a transaction block (`CREATE
    /// DATABASE`, `VACUUM`). Errors carry psql's stderr and the log tail.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String> {
        let mut cmd = Command::new(&self.psql_bin);
        clear_pg_env(&mut cmd);
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-"])
            // Through the environment, not `-d`: psql would read a database
            // name holding `=` as a connection string.
            .env("PGDATABASE", database)
            .env("PGHOST", HOST)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", SUPERUSER)
            .env("PGPASSWORD", &self.superuser_password)
            .env("PGSSLMODE", "disable")
            .env("PGGSSENCMODE", "disable")
            .env("PGCONNECT_TIMEOUT", "10")
            .env("PGAPPNAME", "tempdb-psql");
        let out =
            run_command(cmd, "psql", Some(sql), PSQL_TIMEOUT).map_err(|e| anyhow!(self.redact(&format!("{e:#}"))))?;
        if !out.status.success() {
            return Err(self.failure(&format!("psql on database {database:?}"), Some(&out)));
        }
        let stdout = out.stdout;
        Ok(stdout.strip_suffix('\n').unwrap_or(&stdout).to_owned())
    }

    /// Creates database `name` (owned by `postgres`), grants `CONNECT` on it
    /// to role `exporter`, and creates `pg_stat_statements` in it when that
    /// option is on. Any name PostgreSQL accepts works; it is quoted here.
    pub fn create_database(&self, name: &str) -> Result<()> {
        self.create_database_inner(name, None)
    }

    /// Like [`create_database`](Self::create_database), but copies database
    /// `template` (`CREATE DATABASE ... TEMPLATE ...`): a schema loaded once
    /// into a template costs a file copy per database instead of a reload.
    /// Nobody may be connected to `template` meanwhile (PostgreSQL's rule).
    pub fn create_database_from(&self, name: &str, template: &str) -> Result<()> {
        self.create_database_inner(name, Some(template))
    }

    fn create_database_inner(&self, name: &str, template: Option<&str>) -> Result<()> {
        for n in std::iter::once(name).chain(template) {
            if n.is_empty() || n.contains('\0') {
                bail!("invalid database name {n:?}");
            }
        }
        let ident = quote_ident(name);
        let from = template.map(|t| format!(" TEMPLATE {}", quote_ident(t))).unwrap_or_default();
        // Each statement runs on its own (psql sends them one by one), as
        // CREATE DATABASE must.
        self.psql(
            SUPERUSER,
            &format!("CREATE DATABASE {ident}{from};\nGRANT CONNECT ON DATABASE {ident} TO {EXPORTER_ROLE};\n"),
        )
        .with_context(|| format!("creating database {name:?}"))?;
        if self.pg_stat_statements {
            self.psql(name, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;")
                .with_context(|| format!("creating pg_stat_statements in {name:?}"))?;
        }
        Ok(())
    }

    /// Keeps this server for the rest of the process and stops it (and
    /// removes its directory) when the process exits normally: `main`
    /// returning or `std::process::exit`, which is how the test harness ends
    /// with failed tests too. A static never runs `Drop`; this is how a
    /// server shared by all tests of a binary still goes away. A killed
    /// process leaves it to the next process's sweep (see the module docs).
    ///
    /// Calls after exit began find the server stopped and fail like any
    /// stopped server.
    pub fn keep_until_exit(self) -> &'static TempPostgres {
        let pg: &'static TempPostgres = Box::leak(Box::new(self));
        crate::exit::stop_at_exit(pg);
        pg
    }

    /// Stops the server (`pg_ctl stop -m immediate`, then SIGKILL) and
    /// removes its directory; best effort, never panics.
    pub(crate) fn teardown(&self) {
        let pid_file = self.data_dir.join("postmaster.pid");
        if pid_file.exists() {
            let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w", "-t", "15"], Duration::from_secs(25));
            if pid_file.exists() {
                kill_postmaster(&self.data_dir);
            }
        }
        remove_instance_dir(&self.root, &self.runner);
        if self.port != 0 {
            release_port(self.port);
        }
    }
}

impl TempPostgres {
    // ---- helpers ----------------------------------------------------------

    pub(crate) fn url(&self, user: &str, password: &str, database: &str) -> String {
        format!(
            "postgresql://{user}:{password}@{HOST}:{port}/{db}?sslmode=disable",
            port = self.port,
            db = percent_encode(database)
        )
    }

    pub(crate) fn set_port(&mut self, port: u16) {
        if self.port != 0 && self.port != port {
            release_port(self.port);
        }
        self.port = port;
    }

    /// A command running `<bin_dir>/<tool>` as the server's OS user, in the
    /// instance directory, with a clean libpq environment.
    pub(crate) fn server_command(&self, tool: &str, args: &[OsString]) -> Command {
        let mut cmd = self.runner.command(&self.bin_dir.join(tool), args);
        clear_pg_env(&mut cmd);
        cmd.current_dir(&self.root);
        cmd
    }

    /// Runs `pg_ctl <args> -D <data_dir>`.
    pub(crate) fn pg_ctl<S: AsRef<OsStr>>(&self, args: &[S], timeout: Duration) -> Result<CmdOutput> {
        let mut all: Vec<OsString> = args.iter().map(|a| a.as_ref().to_os_string()).collect();
        all.push("-D".into());
        all.push(self.data_dir.clone().into_os_string());
        let cmd = self.server_command("pg_ctl", &all);
        run_command(cmd, "pg_ctl", None, timeout)
    }

    /// An error for a failed step: the command's exit status, stderr and
    /// stdout, plus the tail of `postgres.log`, scrubbed of passwords.
    pub(crate) fn failure(&self, what: &str, out: Option<&CmdOutput>) -> anyhow::Error {
        let mut msg = format!("{what} failed");
        if let Some(out) = out {
            msg.push_str(&format!(" ({})", out.status));
            msg.push_str(&format!("\n--- stderr ---\n{}", out.stderr.trim_end()));
            if !out.stdout.trim().is_empty() {
                msg.push_str(&format!("\n--- stdout ---\n{}", out.stdout.trim_end()));
            }
        }
        msg.push_str(&format!(
            "\n--- last {LOG_TAIL_LINES} lines of {} ---\n{}",
            self.log_file.display(),
            log_tail(&self.log_file, LOG_TAIL_LINES)
        ));
        anyhow!(self.redact(&msg))
    }

    /// `text` with both generated passwords replaced.
    pub(crate) fn redact(&self, text: &str) -> String {
        let mut s = text.to_owned();
        for pw in [&self.password, &self.superuser_password] {
            if !pw.is_empty() {
                s = s.replace(pw.as_str(), REDACTED);
            }
        }
        s
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        self.teardown();
    }
}

impl fmt::Debug for TempPostgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Passwords deliberately left out.
        f.debug_struct("TempPostgres")
            .field("dir", &self.root)
            .field("port", &self.port)
            .field("bin_dir", &self.bin_dir)
            .field("runner", &self.runner)
            .field("pg_stat_statements", &self.pg_stat_statements)
            .finish_non_exhaustive()
    }
}

/// Returns a TCP port on `127.0.0.1` that was free a moment ago: binds port
/// 0, reads the port the kernel chose, and closes the socket again. Someone
/// else may take it before the caller binds it; [`TempPostgres::start`]
/// retries in that case.
pub fn free_loopback_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0 to find a free port")?;
    let port = listener.local_addr().context("reading the port of a listener on 127.0.0.1:0")?.port();
    drop(listener);
    Ok(port)
}
