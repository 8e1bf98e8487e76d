//! A peer's DSN turned into a `databases:` entry whose credentials are `${VAR}` references.
//!
//! The password is never copied into the output: it becomes `${NAME_PASSWORD}` and the converter
//! says to set that variable. The user becomes `${NAME_USER:-user}`, the peer's user by default.
//! The rest (host, port, database, TLS settings) is not secret and is written as it was, in libpq's
//! `key=value` syntax, quoted, so that a password holding `@`, `/` or a space needs no escaping.
//! Parameters of the peer's driver that libpq does not have are left out with a warning.

use crate::rules::conninfo::{ConnInfo, KNOWN_KEYS};

use super::output::DatabaseOut;
use super::peer_file::{PeerFile, Report};

/// URL schemes (or SQLAlchemy dialects) that name PostgreSQL.
const POSTGRES_SCHEMES: &[&str] = &[
    "postgres",
    "postgresql",
    "pg",
    "pgx",
    "postgresql+psycopg",
    "postgresql+psycopg2",
    "postgresql+asyncpg",
    "postgresql+pg8000",
];

/// Where a DSN was found, for its variables' names and its warnings.
pub(super) struct DsnSite<'a> {
    pub(super) file: &'a PeerFile,
    pub(super) pointer: &'a str,
    /// The `databases:` key the entry gets.
    pub(super) database: &'a str,
}

/// The variable prefix of a database: its name in capitals.
fn prefix(database: &str) -> String {
    database.to_ascii_uppercase()
}

/// libpq's quoting of a `key=value` value.
fn word(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The entry for `dsn` found at `site`.
pub(super) fn database(report: &mut Report, site: &DsnSite<'_>, dsn: &str) -> DatabaseOut {
    let mut comments = Vec::new();
    let name = site.database.to_string();
    let scheme = dsn.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    if let Some(scheme) = &scheme {
        if !POSTGRES_SCHEMES.contains(&scheme.as_str()) {
            comments.push(report.left_out(
                site.file,
                site.pointer,
                format!("database '{name}' is not PostgreSQL (scheme '{scheme}'); this exporter reads PostgreSQL only"),
            ));
            return whole_dsn_variable(report, &name, comments);
        }
    }
    // libpq knows `postgresql://` and `postgres://`; drivers' own schemes name the same thing.
    let libpq_text = match dsn.split_once("://") {
        Some((_, rest)) => format!("postgresql://{rest}"),
        None => dsn.to_string(),
    };
    let (kept, dropped) = split_known_parameters(&libpq_text);
    for key in dropped {
        comments.push(report.left_out(
            site.file,
            site.pointer,
            format!("database '{name}': DSN parameter '{key}' is the peer driver's and not libpq's"),
        ));
    }
    match ConnInfo::parse(&kept) {
        Ok(info) => DatabaseOut { dsn: words(report, &name, &info), name, comments },
        Err(e) => {
            comments.push(report.left_out(site.file, site.pointer, format!("database '{name}': {e}")));
            whole_dsn_variable(report, &name, comments)
        }
    }
}

/// A database whose whole DSN comes from `${NAME_DSN}`.
fn whole_dsn_variable(report: &mut Report, name: &str, comments: Vec<String>) -> DatabaseOut {
    let var = format!("{}_DSN", prefix(name));
    report.variable(&var, format!("the libpq DSN of database '{name}' (postgresql://user:password@host:port/dbname)"));
    DatabaseOut { name: name.to_string(), dsn: format!("${{{var}}}"), comments }
}

/// A database whose DSN comes from the peer's own variable `var` (which already holds a libpq DSN).
pub(super) fn from_variable(report: &mut Report, name: &str, var: &str) -> DatabaseOut {
    report.variable(var, format!("the libpq DSN of database '{name}', as for the peer"));
    DatabaseOut { name: name.to_string(), dsn: format!("${{{var}}}"), comments: Vec::new() }
}

/// The URL's query parameters split into those libpq knows (kept in the text) and the others.
fn split_known_parameters(url: &str) -> (String, Vec<String>) {
    let Some((base, query)) = url.split_once('?') else { return (url.to_string(), Vec::new()) };
    if !url.starts_with("postgresql://") {
        return (url.to_string(), Vec::new());
    }
    let (mut kept, mut dropped) = (Vec::new(), Vec::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        if KNOWN_KEYS.contains(&key) {
            kept.push(pair);
        } else {
            dropped.push(key.to_string());
        }
    }
    let text = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
    (text, dropped)
}

/// The parsed DSN as `key=value` words, the user and password as variables.
fn words(report: &mut Report, name: &str, info: &ConnInfo) -> String {
    let mut out = Vec::new();
    for key in ["host", "port", "dbname"] {
        if let Some(v) = info.get(key) {
            out.push(format!("{key}={}", word(v)));
        }
    }
    let prefix = prefix(name);
    if let Some(user) = info.get("user") {
        let var = format!("{prefix}_USER");
        report.variable(&var, format!("the user of database '{name}' (default: '{user}', the peer's)"));
        out.push(format!("user='${{{var}:-{}}}'", user.replace(['\'', '\\', '}'], "")));
    }
    if info.get("password").is_some() {
        let var = format!("{prefix}_PASSWORD");
        report.variable(
            &var,
            format!("the password of database '{name}' (the peer's configuration has it; it is not copied)"),
        );
        out.push(format!("password='${{{var}}}'"));
    }
    for (key, value) in info.iter() {
        if !["host", "port", "dbname", "user", "password"].contains(&key) {
            out.push(format!("{key}={}", word(value)));
        }
    }
    out.join(" ")
}

/// What the peers' connection labels say of a DSN.
pub(super) struct PeerEndpoint {
    /// `host:port` (the port only when the DSN gives one).
    pub(super) host: String,
    pub(super) dbname: String,
    pub(super) user: String,
}

/// The connection labels justwatch's sql_exporter derives from `dsn`.
pub(super) fn peer_endpoint(dsn: &str) -> Option<PeerEndpoint> {
    let libpq_text = match dsn.split_once("://") {
        Some((_, rest)) => format!("postgresql://{rest}"),
        None => dsn.to_string(),
    };
    let info = ConnInfo::parse(&split_known_parameters(&libpq_text).0).ok()?;
    let host = match (info.get("host"), info.get("port")) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        (None, _) => String::new(),
    };
    Some(PeerEndpoint {
        host,
        dbname: info.get("dbname").unwrap_or_default().to_string(),
        user: info.get("user").unwrap_or_default().to_string(),
    })
}
