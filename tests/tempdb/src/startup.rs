//! The steps of [`TempPostgres::start_with`](crate::TempPostgres::start_with): initdb, configuration, a port, bootstrap.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::command::run_command;
use crate::util::{pick_and_reserve_port, read_from, reserve_port};
use crate::{TempPostgres, TempPostgresOptions};
use crate::{DEMO_DATABASE, EXPORTER_ROLE, HOST, INITDB_TIMEOUT, OS_USER, PORT_RETRIES, START_TIMEOUT_SECS, SUPERUSER};

impl TempPostgres {
    /// Runs `initdb` with a password file for the superuser.
    pub(crate) fn initdb(&mut self) -> Result<()> {
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
    pub(crate) fn write_config(&self, opts: &TempPostgresOptions) -> Result<()> {
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
    pub(crate) fn start_on_some_port(&mut self, fixed: Option<u16>) -> Result<()> {
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
    pub(crate) fn pg_ctl_start(&mut self) -> std::result::Result<(), StartError> {
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
    pub(crate) fn bootstrap(&self) -> Result<()> {
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
}

// ---- start errors ---------------------------------------------------------

/// A failed `pg_ctl start`, and whether the port was the reason.
pub(crate) struct StartError {
    pub(crate) error: anyhow::Error,
    pub(crate) port_in_use: bool,
}
