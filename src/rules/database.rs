//! Databases: `${VAR}` expansion, `dsn_file`, and the DSN parsed once into a [`ConnInfo`].
//!
//! The DSN is expanded and parsed here, at load, and nowhere else: the source builds its connection
//! from the parsed form, and `--check-rules` reports a bad DSN at its line. No message shows a DSN.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::conninfo::ConnInfo;
use super::diagnostic::Diagnostic;
use super::limits::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_LOCK_TIMEOUT, DEFAULT_MAX_CONNECTIONS};
use super::loader::Ctx;
use super::model::{Database, Engine, PasswordSource, Rule};
use super::mysql_dsn;
use super::spec::DatabaseSpec;
use super::tls_files::{self, FileCheck};
use crate::secret::Secret;

const DEFAULT_TTL: std::time::Duration = std::time::Duration::from_secs(60);
const DEFAULT_CMD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Parses a DSN of one engine's syntax.
type DsnParser = fn(&str) -> Result<ConnInfo, String>;
/// Checks the TLS keys of a parsed DSN: errors, then warnings.
type TlsChecker = fn(&ConnInfo, FileCheck) -> (Vec<String>, Vec<String>);

/// A DSN as the loader sees it: with `${VAR}` expanded, and as written in the file (`None` when it
/// came from `dsn_file`), to tell a password written into the rules file.
struct DsnText<'a> {
    expanded: &'a str,
    written: Option<&'a str>,
}

impl Ctx<'_> {
    pub(super) fn database(&mut self, path: &Path, name: String, spec: DatabaseSpec) {
        let ptr = |k: &str| format!("/databases/{name}/{k}");
        if self.set.databases.contains_key(&name) || self.set.endpoints.contains_key(&name) {
            let msg = if self.set.endpoints.contains_key(&name) {
                format!("'{name}' is declared more than once (endpoint and database names share one namespace)")
            } else {
                format!("database '{name}' is declared in more than one file")
            };
            self.error(path, format!("/databases/{name}"), msg);
            return;
        }
        let before = self.diags.len();
        let dsn = match (&spec.dsn, &spec.dsn_file) {
            (Some(dsn), _) => self.expand_env(path, ptr("dsn"), dsn),
            (None, Some(file)) => {
                let file_path = resolve_relative(path, file);
                match std::fs::read_to_string(&file_path) {
                    Ok(text) => text.trim().to_string(),
                    Err(e) => {
                        self.error(path, ptr("dsn_file"), format!("cannot read dsn_file {}: {e}", file_path.display()));
                        String::new()
                    }
                }
            }
            (None, None) => String::new(),
        };
        // A warning (an unset variable) still parses the DSN, but its file paths are not looked at.
        let files = if self.diags.len() == before { FileCheck::Read } else { FileCheck::Skip };
        let has_error = self.diags[before..].iter().any(|d| d.severity == super::diagnostic::Severity::Error);
        let conninfo = if !has_error && !dsn.is_empty() {
            let key = if spec.dsn.is_some() { "dsn" } else { "dsn_file" };
            self.parse_dsn(path, ptr(key), DsnText { expanded: &dsn, written: spec.dsn.as_deref() }, files)
        } else {
            ConnInfo::default()
        };
        let password = self.password_source(path, &name, &spec);
        let engine = mysql_dsn::engine_of(&dsn);
        if spec.pooler.is_some() && engine == Engine::MySql {
            let msg = "pooler is a PostgreSQL setting (PgBouncer's transaction mode); drop it for a MySQL database";
            self.error(path, ptr("pooler"), msg);
        }
        if spec.pooler.is_some() && conninfo.get("options").is_some() {
            let msg = "a transaction pooler refuses the options startup parameter; drop options from the DSN (the exporter sets its timeouts per transaction)";
            self.error(path, ptr("pooler"), msg);
        }
        let connect_timeout =
            self.duration(path, ptr("connect_timeout"), spec.connect_timeout.as_deref(), DEFAULT_CONNECT_TIMEOUT);
        let lock_timeout = self.duration(path, ptr("lock_timeout"), spec.lock_timeout.as_deref(), DEFAULT_LOCK_TIMEOUT);
        self.set.databases.insert(
            name.clone(),
            Arc::new(Database {
                name,
                engine,
                assumed_flavour: mysql_dsn::assumed_flavour_of(&dsn),
                dsn: Secret::new(dsn),
                conninfo,
                max_connections: spec.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
                connect_timeout,
                lock_timeout,
                password,
                pooler: spec.pooler,
            }),
        );
    }

    /// The DSN must parse (else every rule on the database would fail), and a password must not be
    /// written into the rules file itself. Neither message shows the DSN.
    fn parse_dsn(&mut self, path: &Path, pointer: String, dsn: DsnText<'_>, files: FileCheck) -> ConnInfo {
        let DsnText { expanded, written } = dsn;
        let (parse, check): (DsnParser, TlsChecker) = match mysql_dsn::engine_of(expanded) {
            Engine::Postgres => (ConnInfo::parse, tls_files::check),
            Engine::MySql => (mysql_dsn::parse, mysql_dsn::check),
        };
        let conninfo = match parse(expanded) {
            Ok(c) => c,
            Err(msg) => {
                self.error(path, pointer, msg);
                return ConnInfo::default();
            }
        };
        let (errors, warnings) = check(&conninfo, files);
        let failed = !errors.is_empty();
        for e in errors {
            self.error(path, pointer.clone(), e);
        }
        for w in warnings {
            self.warning(path, pointer.clone(), w);
        }
        if failed {
            return ConnInfo::default();
        }
        let literal_password = written
            .and_then(|w| parse(w).ok())
            .and_then(|c| c.get("password").map(|p| !p.is_empty() && !p.contains("${")))
            .unwrap_or(false);
        if literal_password {
            let msg = "the DSN has a password written into the rules file; take it from the environment (${VAR}) or from dsn_file";
            self.warning(path, pointer, msg);
        }
        conninfo
    }

    /// `password_file` or `password_command`: at most one, and never run or read here (the file is
    /// read per connection, and `--check-rules` must not run a command).
    fn password_source(&mut self, path: &Path, name: &str, spec: &DatabaseSpec) -> PasswordSource {
        let ptr = |k: &str| format!("/databases/{name}/{k}");
        let ttl = self.duration(path, ptr("password_cache_ttl"), spec.password_cache_ttl.as_deref(), DEFAULT_TTL);
        let timeout = self.duration(
            path,
            ptr("password_command_timeout"),
            spec.password_command_timeout.as_deref(),
            DEFAULT_CMD_TIMEOUT,
        );
        match (&spec.password_file, &spec.password_command) {
            (Some(_), Some(_)) => {
                self.error(path, ptr("password_command"), "give password_file or password_command, not both");
                PasswordSource::Dsn
            }
            (Some(file), None) => {
                let file = self.expand_env(path, ptr("password_file"), file);
                PasswordSource::File(resolve_relative(path, &file))
            }
            (None, Some(argv)) if argv.is_empty() || argv[0].is_empty() => {
                self.error(path, ptr("password_command"), "password_command needs a program: [program, arg, ...]");
                PasswordSource::Dsn
            }
            (None, Some(argv)) => PasswordSource::Command { argv: argv.clone(), timeout, cache_ttl: ttl },
            (None, None) => PasswordSource::Dsn,
        }
    }

    /// Replaces `${VAR}` with the variable's value, and `${VAR:-default}` with it or, when it is unset
    /// or empty, with `default` (as the shell does). The value is never echoed in a message.
    /// Every database a rule names must be declared in one of the files.
    pub(super) fn databases_declared(&mut self, rule: &Rule, names: &[String], base: &str) {
        for (i, database) in names.iter().enumerate() {
            if self.set.databases.contains_key(database) {
                continue;
            }
            // At most a few names: a file with thousands of databases must not get thousands of
            // messages each listing them all.
            let mut declared: Vec<&str> = self.set.databases.keys().take(10).map(String::as_str).collect();
            if self.set.databases.len() > declared.len() {
                declared.push("…");
            }
            let msg = format!(
                "rule '{}' uses database '{}', which no rules file declares under `databases` (declared: {})",
                rule.name,
                database,
                if declared.is_empty() { "none".to_string() } else { declared.join(", ") }
            );
            let key = if names.len() > 1 { format!("database/{i}") } else { "database".to_string() };
            let pointer = format!("{base}/{key}");
            if !self.schema_reported(&rule.file, &pointer) {
                self.diags.push(Diagnostic::error(&rule.file, pointer, msg));
            }
        }
    }

    pub(super) fn expand_env(&mut self, path: &Path, pointer: String, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                self.error(path, pointer.clone(), "unterminated ${ in value; write ${NAME}");
                return out;
            };
            let (var, default) = match after[..end].split_once(":-") {
                Some((var, default)) => (var, Some(default)),
                None => (&after[..end], None),
            };
            match ((self.opts.env)(var), default) {
                (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    let msg = format!("environment variable {var} is not set; export it before starting the exporter");
                    let d = if self.opts.unset_env_is_error {
                        Diagnostic::error(path, pointer.clone(), msg)
                    } else {
                        Diagnostic::warning(path, pointer.clone(), msg)
                    };
                    self.diags.push(d);
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }
}

pub(super) fn resolve_relative(rules_file: &Path, file: &str) -> PathBuf {
    let p = Path::new(file);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        rules_file.parent().unwrap_or(Path::new(".")).join(p)
    }
}
