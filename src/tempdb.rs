//! Throwaway PostgreSQL servers for tests, the demo and benchmarks.
//!
//! The exporter's whole job is running SQL against PostgreSQL, so its tests
//! must run against a *real* server, not a mock: error codes, type mapping,
//! timeouts and "database is down" behaviour only mean something when a real
//! PostgreSQL produces them. Nobody should have to set such a server up by
//! hand either — not a developer running `cargo test`, not CI on a fresh
//! machine, not someone trying the demo. [`TempPostgres`] therefore starts a
//! private server from the installed PostgreSQL binaries in a fresh temporary
//! directory, on a free loopback port, and tears it down again on drop.
//!
//! What a started instance looks like:
//!
//! * data directory, unix socket and `postgres.log` live in a fresh
//!   `ssx-pg-<pid>-<n>-<rand>/` directory (a short path on purpose: unix
//!   socket paths are limited to ~107 bytes) under `/dev/shm` when that is a
//!   tmpfs with at least 1 GiB free — `initdb` is about four times faster
//!   there (0.3 s instead of 1.2 s measured on the development machine) —
//!   else under `/tmp`; the environment variable `TEMPDB_DIR` forces another
//!   parent (say `/tmp` for a benchmark whose data should not sit in RAM);
//! * the server listens on `127.0.0.1` only; every login (TCP and unix
//!   socket) needs a password (`scram-sha-256`);
//! * the bootstrap superuser is `postgres`; a login role `exporter` — the role
//!   the exporter and the tests connect as — gets `pg_read_all_data` and
//!   `pg_monitor`, so it can read every table and every statistics view but
//!   write nothing;
//! * a database `demo` (owned by `postgres`, `CONNECT` granted to `exporter`)
//!   is created by [`TempPostgres::start`] itself, so `dsn("demo")` works at
//!   once; [`TempPostgres::create_database`] makes more;
//! * durability is switched off (`fsync`, `synchronous_commit`,
//!   `full_page_writes`) because the data is thrown away anyway.
//!
//! PostgreSQL refuses to run as root. When this process runs as root (as it
//! does on the development machines and in CI), `initdb`, `pg_ctl` and the
//! server run as the unprivileged `postgres` system user through `runuser`
//! (or `su` where `runuser` is missing), and the temporary directory is
//! handed to that user. `psql` itself runs as the current user and connects
//! over TCP with the superuser's password.
//!
//! The binaries are looked up in `$PG_BIN_DIR` if set, else in the
//! highest-numbered `/usr/lib/postgresql/<version>/bin` that has `initdb`,
//! else through `initdb` on `PATH`.
//!
//! The API is blocking (it runs `initdb`, `pg_ctl` and `psql` as child
//! processes); starting an instance takes about a second. From async code
//! either accept the short block (fine in tests) or use
//! `tokio::task::spawn_blocking`.
//!
//! Error messages never contain a password or a DSN: every message built
//! here is scrubbed of both generated passwords before it is returned.
//!
//! Servers of a process that died without running `Drop` (killed test run,
//! Ctrl-C) are cleaned up by the next process that starts an instance: it
//! stops the servers of `ssx-pg-<pid>-*` directories (in `/dev/shm`, `/tmp`
//! and `$TEMPDB_DIR`) whose `<pid>` no longer exists and removes those
//! directories.

use std::collections::hash_map::RandomState;
use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::hash::{BuildHasher, Hash, Hasher};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex, Once, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};

/// The only address the server listens on.
const HOST: &str = "127.0.0.1";
/// The bootstrap superuser role (and, when running as root, the OS user).
const SUPERUSER: &str = "postgres";
/// The OS user PostgreSQL runs as when this process is root.
const OS_USER: &str = "postgres";
/// The login role tests and the exporter connect as.
const EXPORTER_ROLE: &str = "exporter";
/// The database [`TempPostgres::start`] creates.
const DEMO_DATABASE: &str = "demo";
/// Where instance directories go when `/dev/shm` is not usable.
const TMP_ROOT: &str = "/tmp";
/// Preferred parent of instance directories: tmpfs makes `initdb` ~4x faster.
const SHM_ROOT: &str = "/dev/shm";
/// `/dev/shm` is used only with at least this much room (KiB): Docker's
/// default of 64 MiB would not even hold one data directory.
const SHM_MIN_FREE_KIB: u64 = 1024 * 1024;
/// Environment variable forcing the parent of instance directories.
const DIR_ENV: &str = "TEMPDB_DIR";
/// Longest unix socket path (`sun_path` is 108 bytes with the final NUL).
const MAX_SOCKET_PATH: usize = 107;
/// Prefix of instance directory names: `ssx-pg-<pid>-<n>-<rand>`.
const DIR_PREFIX: &str = "ssx-pg-";
/// How many lines of `postgres.log` an error message carries.
const LOG_TAIL_LINES: usize = 30;
/// `pg_ctl start -t`.
const START_TIMEOUT_SECS: u64 = 30;
/// `pg_ctl stop -t`.
const STOP_TIMEOUT_SECS: u64 = 30;
/// Extra attempts with a fresh port when the chosen one was taken meanwhile.
const PORT_RETRIES: usize = 3;
/// Upper bound for a single `psql` run.
const PSQL_TIMEOUT: Duration = Duration::from_secs(120);
/// Upper bound for `initdb`.
const INITDB_TIMEOUT: Duration = Duration::from_secs(120);
/// Replaces passwords in error messages.
const REDACTED: &str = "<redacted>";

/// Environment variables of libpq and the server tools that must not leak
/// from the caller's environment into the commands run here.
const PG_ENV_VARS: &[&str] = &[
    "PGDATA",
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGSSLMODE",
    "PGGSSENCMODE",
    "PGAPPNAME",
    "PGCONNECT_TIMEOUT",
    "PGTARGETSESSIONATTRS",
    "PGCTLTIMEOUT",
    "PSQLRC",
];

/// Ports of the live instances of this process, so parallel tests never hand
/// the same port to two instances.
static RESERVED_PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
/// Makes directory names and random seeds unique within this process.
static COUNTER: AtomicU64 = AtomicU64::new(0);
/// The stale-instance sweep runs once per process.
static SWEEP: Once = Once::new();
/// The parent of instance directories, chosen once per process.
static PARENT_DIR: OnceLock<PathBuf> = OnceLock::new();

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
    root: PathBuf,
    /// `<root>/data`.
    data_dir: PathBuf,
    /// `<root>/postgres.log`.
    log_file: PathBuf,
    /// Directory holding `initdb`, `pg_ctl`, `postgres`.
    bin_dir: PathBuf,
    /// The `psql` to run.
    psql_bin: PathBuf,
    /// How server-side commands are run (directly or as `postgres`).
    runner: Runner,
    /// The port, 0 until one was chosen.
    port: u16,
    /// Password of role `exporter`.
    password: String,
    /// Password of the superuser `postgres`.
    superuser_password: String,
    /// Whether `pg_stat_statements` is set up.
    pg_stat_statements: bool,
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
        if name.is_empty() || name.contains('\0') {
            bail!("invalid database name {name:?}");
        }
        let ident = quote_ident(name);
        // Each statement runs on its own (psql sends them one by one), as
        // CREATE DATABASE must.
        self.psql(
            SUPERUSER,
            &format!("CREATE DATABASE {ident};\nGRANT CONNECT ON DATABASE {ident} TO {EXPORTER_ROLE};\n"),
        )
        .with_context(|| format!("creating database {name:?}"))?;
        if self.pg_stat_statements {
            self.psql(name, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;")
                .with_context(|| format!("creating pg_stat_statements in {name:?}"))?;
        }
        Ok(())
    }

    // ---- start-up steps -------------------------------------------------

    /// Runs `initdb` with a password file for the superuser.
    fn initdb(&mut self) -> Result<()> {
        let pwfile = self.root.join("pwfile");
        {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&pwfile)
                .with_context(|| format!("creating {}", pwfile.display()))?;
            writeln!(f, "{}", self.superuser_password).with_context(|| format!("writing {}", pwfile.display()))?;
        }
        if self.runner.is_switching() {
            let mut chown = Command::new("chown");
            chown.arg("-R").arg(format!("{OS_USER}:")).arg(&self.root);
            let out = run_command(chown, "chown", None, Duration::from_secs(30))?;
            if !out.status.success() {
                return Err(self.failure(&format!("chown -R {OS_USER}: {}", self.root.display()), Some(&out)));
            }
        }
        let mut args: Vec<OsString> = vec!["-D".into(), self.data_dir.clone().into_os_string()];
        for a in ["-U", SUPERUSER, "--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"] {
            args.push(a.into());
        }
        let mut pwarg = OsString::from("--pwfile=");
        pwarg.push(&pwfile);
        args.push(pwarg);
        let cmd = self.server_command("initdb", &args);
        let out = run_command(cmd, "initdb", None, INITDB_TIMEOUT)?;
        // The password is in the server's catalog now; the file is not needed.
        let _ = fs::remove_file(&pwfile);
        if !out.status.success() {
            return Err(self.failure("initdb", Some(&out)));
        }
        Ok(())
    }

    /// Appends this harness's settings and the caller's lines to
    /// `postgresql.conf`.
    fn write_config(&self, opts: &TempPostgresOptions) -> Result<()> {
        let socket_dir = self.root.to_string_lossy().replace('\'', "''");
        let mut conf = format!(
            "\n# ---- added by sql-signal-exporter tempdb ----\n\
             listen_addresses = '{HOST}'\n\
             unix_socket_directories = '{socket_dir}'\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             max_connections = 200\n\
             shared_buffers = 128MB\n\
             logging_collector = off\n\
             password_encryption = 'scram-sha-256'\n"
        );
        if opts.pg_stat_statements {
            conf.push_str(
                "shared_preload_libraries = 'pg_stat_statements'\n\
                 pg_stat_statements.track = all\n",
            );
        }
        if !opts.extra_conf.is_empty() {
            conf.push_str("# ---- extra_conf ----\n");
            for line in &opts.extra_conf {
                conf.push_str(line);
                conf.push('\n');
            }
        }
        let path = self.data_dir.join("postgresql.conf");
        let mut f =
            fs::OpenOptions::new().append(true).open(&path).with_context(|| format!("opening {}", path.display()))?;
        f.write_all(conf.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Starts the server on `fixed` or on a free port, retrying with fresh
    /// ports when a picked one turns out to be taken.
    fn start_on_some_port(&mut self, fixed: Option<u16>) -> Result<()> {
        if let Some(port) = fixed {
            if port == 0 {
                bail!("port 0 is not a port to listen on; use None to pick a free one");
            }
            if !reserve_port(port) {
                bail!("port {port} is already used by another TempPostgres of this process");
            }
            self.port = port;
            return self.pg_ctl_start().map_err(|e| e.error);
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = pick_and_reserve_port()?;
            self.set_port(port);
            match self.pg_ctl_start() {
                Ok(()) => return Ok(()),
                Err(e) if e.port_in_use && attempt <= PORT_RETRIES => {
                    tracing::debug!(port, attempt, "port taken meanwhile, trying another one");
                }
                Err(e) => return Err(e.error),
            }
        }
    }

    /// `pg_ctl start -w` on the current port.
    fn pg_ctl_start(&mut self) -> std::result::Result<(), StartError> {
        let log_len_before = fs::metadata(&self.log_file).map(|m| m.len()).unwrap_or(0);
        let mut args: Vec<OsString> = Vec::new();
        for a in ["start", "-w", "-t", &START_TIMEOUT_SECS.to_string(), "-l"] {
            args.push(a.into());
        }
        args.push(self.log_file.clone().into_os_string());
        args.push("-o".into());
        args.push(format!("-p {}", self.port).into());
        let out = self
            .pg_ctl(&args, Duration::from_secs(START_TIMEOUT_SECS + 15))
            .map_err(|error| StartError { error, port_in_use: false })?;
        if out.status.success() {
            return Ok(());
        }
        let new_log = read_from(&self.log_file, log_len_before);
        let port_in_use =
            new_log.contains("Address already in use") || new_log.contains("could not create any TCP/IP sockets");
        // A half-started postmaster would keep the data directory locked.
        if self.data_dir.join("postmaster.pid").exists() {
            let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w", "-t", "10"], Duration::from_secs(20));
        }
        Err(StartError { error: self.failure(&format!("pg_ctl start (port {})", self.port), Some(&out)), port_in_use })
    }

    /// Creates role `exporter`, database `demo`, and `pg_stat_statements`.
    fn bootstrap(&self) -> Result<()> {
        // The password is hex, so it needs no quoting; it goes through stdin,
        // never through a command line.
        let sql = format!(
            "CREATE ROLE {EXPORTER_ROLE} LOGIN PASSWORD '{password}';\n\
             DO $$\n\
             BEGIN\n\
               IF current_setting('server_version_num')::int >= 140000 THEN\n\
                 EXECUTE 'GRANT pg_read_all_data TO {EXPORTER_ROLE}';\n\
               END IF;\n\
               IF current_setting('server_version_num')::int >= 100000 THEN\n\
                 EXECUTE 'GRANT pg_monitor TO {EXPORTER_ROLE}';\n\
               END IF;\n\
             END\n\
             $$;\n",
            password = self.password
        );
        self.psql(SUPERUSER, &sql).context("creating role exporter")?;
        if self.pg_stat_statements {
            self.psql(SUPERUSER, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;")
                .context("creating pg_stat_statements in postgres")?;
        }
        self.create_database(DEMO_DATABASE)
    }

    // ---- helpers ----------------------------------------------------------

    fn url(&self, user: &str, password: &str, database: &str) -> String {
        format!(
            "postgresql://{user}:{password}@{HOST}:{port}/{db}?sslmode=disable",
            port = self.port,
            db = percent_encode(database)
        )
    }

    fn set_port(&mut self, port: u16) {
        if self.port != 0 && self.port != port {
            release_port(self.port);
        }
        self.port = port;
    }

    /// A command running `<bin_dir>/<tool>` as the server's OS user, in the
    /// instance directory, with a clean libpq environment.
    fn server_command(&self, tool: &str, args: &[OsString]) -> Command {
        let mut cmd = self.runner.command(&self.bin_dir.join(tool), args);
        clear_pg_env(&mut cmd);
        cmd.current_dir(&self.root);
        cmd
    }

    /// Runs `pg_ctl <args> -D <data_dir>`.
    fn pg_ctl<S: AsRef<OsStr>>(&self, args: &[S], timeout: Duration) -> Result<CmdOutput> {
        let mut all: Vec<OsString> = args.iter().map(|a| a.as_ref().to_os_string()).collect();
        all.push("-D".into());
        all.push(self.data_dir.clone().into_os_string());
        let cmd = self.server_command("pg_ctl", &all);
        run_command(cmd, "pg_ctl", None, timeout)
    }

    /// An error for a failed step: the command's exit status, stderr and
    /// stdout, plus the tail of `postgres.log`, scrubbed of passwords.
    fn failure(&self, what: &str, out: Option<&CmdOutput>) -> anyhow::Error {
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
    fn redact(&self, text: &str) -> String {
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

// ---- start errors ---------------------------------------------------------

/// A failed `pg_ctl start`, and whether the port was the reason.
struct StartError {
    error: anyhow::Error,
    port_in_use: bool,
}

// ---- running commands -------------------------------------------------------

/// How server-side tools are run.
#[derive(Debug, Clone)]
enum Runner {
    /// As the current (non-root) user.
    Current,
    /// As root, through `runuser -u postgres --`.
    Runuser(PathBuf),
    /// As root, through `su postgres -s /bin/sh -c '...'`.
    Su(PathBuf),
}

impl Runner {
    fn detect() -> Result<Runner> {
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
    fn is_switching(&self) -> bool {
        !matches!(self, Runner::Current)
    }

    fn command(&self, program: &Path, args: &[OsString]) -> Command {
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
struct CmdOutput {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` to completion (at most `timeout`, then it is killed), feeding
/// it `stdin` and capturing its output. Only fails if the command could not
/// be run or timed out; a non-zero exit is the caller's to judge.
fn run_command(mut cmd: Command, what: &str, stdin: Option<&str>, timeout: Duration) -> Result<CmdOutput> {
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

fn spawn_reader<R: Read + Send + 'static>(source: Option<R>) -> mpsc::Receiver<Vec<u8>> {
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

fn collect(rx: &mpsc::Receiver<Vec<u8>>, wait: Duration) -> String {
    match rx.recv_timeout(wait) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(mpsc::RecvTimeoutError::Disconnected) => String::new(),
        Err(mpsc::RecvTimeoutError::Timeout) => "<output unavailable: still held open by another process>".to_owned(),
    }
}

fn clear_pg_env(cmd: &mut Command) {
    for var in PG_ENV_VARS {
        cmd.env_remove(var);
    }
}

/// Quotes `s` for `/bin/sh`.
fn shell_quote(s: &OsStr) -> String {
    format!("'{}'", s.to_string_lossy().replace('\'', "'\\''"))
}

// ---- locating things --------------------------------------------------------

/// `$PG_BIN_DIR`, else the highest `/usr/lib/postgresql/<v>/bin` with
/// `initdb`, else the directory of `initdb` on `PATH`.
fn find_bin_dir() -> Result<PathBuf> {
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
fn parse_version(name: &str) -> Option<Vec<u64>> {
    name.split('.').map(|p| p.parse().ok()).collect()
}

fn find_psql(bin_dir: &Path) -> PathBuf {
    let candidate = bin_dir.join("psql");
    if is_executable(&candidate) {
        return candidate;
    }
    find_program("psql", &["/usr/bin/psql"]).unwrap_or_else(|| PathBuf::from("psql"))
}

/// The first executable of `candidates`, else `name` on `PATH`.
fn find_program(name: &str, candidates: &[&str]) -> Option<PathBuf> {
    for c in candidates {
        if is_executable(Path::new(c)) {
            return Some(PathBuf::from(c));
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// The effective uid: the owner of `/proc/self`, else `id -u`.
fn effective_uid() -> Result<u32> {
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

// ---- instance directories -------------------------------------------------

/// `$TEMPDB_DIR` if set, else `/dev/shm` if it is a writable directory
/// with room, else `/tmp`.
fn parent_dir() -> &'static Path {
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
fn shm_is_roomy() -> bool {
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

fn create_instance_dir(parent: &Path) -> Result<PathBuf> {
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
fn remove_instance_dir(root: &Path, runner: &Runner) {
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
fn kill_postmaster(data_dir: &Path) {
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
fn sweep_stale_instances(bin_dir: &Path, runner: &Runner) {
    let mut parents = vec![PathBuf::from(SHM_ROOT), PathBuf::from(TMP_ROOT)];
    let chosen = parent_dir().to_path_buf();
    if !parents.contains(&chosen) {
        parents.push(chosen);
    }
    for parent in parents {
        sweep_stale_instances_in(&parent, bin_dir, runner);
    }
}

fn sweep_stale_instances_in(parent: &Path, bin_dir: &Path, runner: &Runner) {
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

// ---- ports ------------------------------------------------------------------

fn reserved_ports() -> std::sync::MutexGuard<'static, BTreeSet<u16>> {
    RESERVED_PORTS.lock().unwrap_or_else(|e| e.into_inner())
}

fn reserve_port(port: u16) -> bool {
    reserved_ports().insert(port)
}

fn release_port(port: u16) {
    reserved_ports().remove(&port);
}

/// A free loopback port that no other instance of this process holds.
fn pick_and_reserve_port() -> Result<u16> {
    for _ in 0..20 {
        let port = free_loopback_port()?;
        if reserve_port(port) {
            return Ok(port);
        }
    }
    bail!("could not find a free loopback port not already used by this process")
}

// ---- small utilities ---------------------------------------------------------

/// 64 unpredictable bits without extra crates: std's `RandomState` is seeded
/// from the OS; time, pid and a counter are mixed in on top.
fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0).hash(&mut h);
    std::process::id().hash(&mut h);
    COUNTER.fetch_add(1, Ordering::Relaxed).hash(&mut h);
    h.finish()
}

/// 32 hex digits: safe in URLs, SQL string literals and shell words.
fn generate_password() -> String {
    format!("{:016x}{:016x}", random_u64(), random_u64())
}

/// `"name"` with embedded quotes doubled.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The last `n` lines of `path`, or a note why there are none.
fn log_tail(path: &Path, n: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(n)..].join("\n");
            if tail.is_empty() {
                "(log is empty)".to_owned()
            } else {
                tail
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "(no log written yet)".to_owned(),
        Err(e) => format!("(could not read the log: {e})"),
    }
}

/// The contents of `path` from byte `offset` on (empty on any error).
fn read_from(path: &Path, offset: u64) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let start = usize::try_from(offset).unwrap_or(0).min(bytes.len());
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_numerically() {
        assert!(parse_version("15") > parse_version("9.6"));
        assert_eq!(parse_version("main"), None);
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
        assert_eq!(percent_encode("de mo/x"), "de%20mo%2Fx");
        assert_eq!(shell_quote(OsStr::new("it's")), r#"'it'\''s'"#);
    }

    #[test]
    fn passwords_differ_and_are_hex() {
        let a = generate_password();
        let b = generate_password();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn free_port_is_nonzero() {
        assert_ne!(free_loopback_port().unwrap(), 0);
    }
}
