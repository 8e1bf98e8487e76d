//! MySQL and MariaDB DSNs (`mysql://user@host:3306/db?ssl-mode=VERIFY_IDENTITY&ssl-ca=/ca.pem`),
//! parsed once at load into the same [`ConnInfo`] a libpq DSN becomes.
//!
//! The scheme chooses the engine ([`engine_of`]): the loader reads it before anything else, so a
//! database's kind of source is a fact of its DSN and nothing else (no `engine:` key that could
//! disagree with it). The URL's parts map to the keywords libpq's do (`host`, `port`, `user`,
//! `password`, `dbname`), so code that reads a password or a host reads them the same way for both
//! engines; the query keys are MySQL's own client options ([`MYSQL_KEYS`]), so a DSN copied from a
//! MySQL client's configuration means what it meant there. An unknown key is an error, as for
//! libpq, so a typo such as `ssl_mode` cannot silently connect in plaintext.
//!
//! No message here contains the DSN or a piece of it: it may hold a password.

use std::collections::BTreeMap;

use super::conninfo::{describe_key_among, parse_url, ConnInfo, UrlSyntax};
use super::model::Engine;
use super::server::Flavour;
use super::tls_files::{certificates, private_key, FileCheck};

/// The schemes of a MySQL DSN; `mariadb://` is the same thing under MariaDB's name.
pub const MYSQL_SCHEMES: &[&str] = &["mysql://", MARIADB_SCHEME];
/// The scheme that names MariaDB, which templates assume until the server tells.
const MARIADB_SCHEME: &str = "mariadb://";

/// The query keys a MySQL DSN may set: the MySQL client's TLS options, by their names.
pub const MYSQL_KEYS: &[&str] = &["ssl-mode", "ssl-ca", "ssl-cert", "ssl-key"];

/// Where the URL syntax is documented.
const MYSQL_URL: UrlSyntax = UrlSyntax {
    name: "MySQL URL (mysql://user@host:3306/database?ssl-mode=VERIFY_IDENTITY&ssl-ca=/path/ca.pem)",
    help: "see https://dev.mysql.com/doc/refman/8.0/en/connecting-using-uri-or-key-value-pairs.html",
};

/// The MySQL client's `--ssl-mode`, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MySqlSslMode {
    Disabled,
    /// TLS when the server offers it, unverified; plaintext when it does not (MySQL's default).
    Preferred,
    /// TLS or no connection; the certificate is verified against `ssl-ca` when one is given.
    Required,
    /// TLS with the chain verified against `ssl-ca`, not the host name.
    VerifyCa,
    /// TLS with the chain and the host name verified.
    VerifyIdentity,
}

impl MySqlSslMode {
    /// Every mode with its name, as the MySQL client spells it.
    const NAMES: [(&'static str, MySqlSslMode); 5] = [
        ("DISABLED", MySqlSslMode::Disabled),
        ("PREFERRED", MySqlSslMode::Preferred),
        ("REQUIRED", MySqlSslMode::Required),
        ("VERIFY_CA", MySqlSslMode::VerifyCa),
        ("VERIFY_IDENTITY", MySqlSslMode::VerifyIdentity),
    ];

    /// The mode a parsed DSN asks for (case-insensitive, as the MySQL client reads it);
    /// [`MySqlSslMode::Preferred`] when it sets none.
    pub fn of(c: &ConnInfo) -> Result<MySqlSslMode, String> {
        let Some(text) = c.get("ssl-mode") else { return Ok(MySqlSslMode::Preferred) };
        Self::NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(text))
            .map(|(_, m)| *m)
            .ok_or_else(|| format!("ssl-mode must be one of {}", Self::NAMES.map(|(n, _)| n).join(", ")))
    }

    /// The mode's name, for messages.
    pub fn name(self) -> &'static str {
        Self::NAMES.iter().find(|(_, m)| *m == self).map(|(n, _)| *n).unwrap_or("PREFERRED")
    }
}

/// The engine a DSN's scheme names.
pub fn engine_of(dsn: &str) -> Engine {
    let text = dsn.trim_start();
    if MYSQL_SCHEMES.iter().any(|s| text.len() >= s.len() && text[..s.len()].eq_ignore_ascii_case(s)) {
        Engine::MySql
    } else {
        Engine::Postgres
    }
}

/// The flavour templates assume for a DSN until its server tells: `mariadb://` assumes MariaDB,
/// `mysql://` MySQL (the scheme is the author's word for the server; the first session corrects
/// it), anything else PostgreSQL.
pub fn assumed_flavour_of(dsn: &str) -> Flavour {
    let text = dsn.trim_start();
    let starts = |scheme: &str| text.len() >= scheme.len() && text[..scheme.len()].eq_ignore_ascii_case(scheme);
    match engine_of(dsn) {
        Engine::Postgres => Flavour::Postgresql,
        Engine::MySql if starts(MARIADB_SCHEME) => Flavour::Mariadb,
        Engine::MySql => Flavour::Mysql,
    }
}

/// Parses a MySQL URL. The error never quotes the text.
pub fn parse(text: &str) -> Result<ConnInfo, String> {
    let text = text.trim();
    let rest = MYSQL_SCHEMES
        .iter()
        .find(|s| text.len() >= s.len() && text[..s.len()].eq_ignore_ascii_case(s))
        .map(|s| &text[s.len()..])
        .ok_or_else(|| format!("a MySQL DSN starts with {}", MYSQL_SCHEMES.join(" or ")))?;
    let params: BTreeMap<String, String> = parse_url(rest, &MYSQL_URL)?;
    for key in params.keys() {
        let part = ["host", "port", "user", "password", "dbname"].contains(&key.as_str());
        if !part && !MYSQL_KEYS.contains(&key.as_str()) {
            return Err(format!(
                "the DSN sets {}, which is not a MySQL connection option this exporter knows; known: {}",
                describe_key_among(key, MYSQL_KEYS),
                MYSQL_KEYS.join(", ")
            ));
        }
        if key == "host" && params[key].contains(',') {
            return Err("a MySQL DSN names one host; put a load balancer or proxy in front of several".into());
        }
    }
    Ok(ConnInfo::from_params(params))
}

/// Errors (first) and warnings about the TLS keys of a MySQL DSN that parsed; the files it names
/// are parsed here as the connection will parse them.
pub fn check(c: &ConnInfo, files: FileCheck) -> (Vec<String>, Vec<String>) {
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    let mode = match MySqlSslMode::of(c) {
        Ok(m) => m,
        Err(e) => return (vec![e], warnings),
    };
    if matches!(mode, MySqlSslMode::VerifyCa | MySqlSslMode::VerifyIdentity) && c.get("ssl-ca").is_none() {
        errors
            .push(format!("ssl-mode={} needs ssl-ca: the CA certificate file to verify the server with", mode.name()));
    }
    match (c.get("ssl-cert"), c.get("ssl-key")) {
        (Some(_), None) => errors.push("ssl-cert is set without ssl-key; give both for a client certificate".into()),
        (None, Some(_)) => errors.push("ssl-key is set without ssl-cert; give both for a client certificate".into()),
        _ => {}
    }
    if mode == MySqlSslMode::Disabled && MYSQL_KEYS[1..].iter().any(|k| c.get(k).is_some()) {
        warnings.push("ssl-mode=DISABLED: ssl-ca, ssl-cert and ssl-key are ignored".into());
    }
    if mode == MySqlSslMode::Preferred && c.get("ssl-mode").is_some() {
        warnings.push("ssl-mode=PREFERRED verifies no certificate and falls back to plaintext when the server offers no TLS: use VERIFY_IDENTITY for a database across a network".into());
    }
    if files == FileCheck::Skip {
        return (errors, warnings);
    }
    for key in ["ssl-ca", "ssl-cert"] {
        if let Some(Err(e)) = c.get(key).map(certificates) {
            errors.push(format!("{key}: {e}"));
        }
    }
    if let Some(Err(e)) = c.get("ssl-key").map(private_key) {
        errors.push(format!("ssl-key: {e}"));
    }
    (errors, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_chooses_the_engine_and_parts_map_to_libpq_keywords() {
        assert_eq!(engine_of("mysql://u@h/db"), Engine::MySql);
        assert_eq!(engine_of("MariaDB://u@h/db"), Engine::MySql);
        assert_eq!(engine_of("postgresql://u@h/db"), Engine::Postgres);
        assert_eq!(engine_of("host=a"), Engine::Postgres);
        assert_eq!(assumed_flavour_of("mysql://u@h/db"), Flavour::Mysql);
        assert_eq!(assumed_flavour_of(" MariaDB://u@h/db"), Flavour::Mariadb);
        assert_eq!(assumed_flavour_of("postgresql://u@h/db"), Flavour::Postgresql);
        assert_eq!(assumed_flavour_of("host=a"), Flavour::Postgresql);
        let c = parse("mysql://me:p%40ss@db.example:3307/app?ssl-mode=verify_identity&ssl-ca=/ca.pem").unwrap();
        assert_eq!(c.get("user"), Some("me"));
        assert_eq!(c.get("password"), Some("p@ss"));
        assert_eq!(c.get("host"), Some("db.example"));
        assert_eq!(c.get("port"), Some("3307"));
        assert_eq!(c.get("dbname"), Some("app"));
        assert_eq!(MySqlSslMode::of(&c), Ok(MySqlSslMode::VerifyIdentity));
        assert_eq!(MySqlSslMode::of(&parse("mysql://h").unwrap()), Ok(MySqlSslMode::Preferred));
    }

    #[test]
    fn errors_name_the_problem_and_never_quote_the_text() {
        for bad in [
            "mysql://u:hunter2@h:99999/db",
            "mysql://u:hunter2@h/db?ssl_mode=hunter2",
            "mysql://u:hunter2@h/db?hunter2",
            "mysql://u:hunter2@a,b/db",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(!e.contains("hunter2"), "{bad}: {e}");
        }
        assert!(parse("mysql://h/db?ssl_mode=x").unwrap_err().contains("did you mean 'ssl-mode'"));
        let (errors, _) = check(&parse("mysql://h/db?ssl-mode=strict").unwrap(), FileCheck::Read);
        assert!(errors[0].contains("one of DISABLED"), "{errors:?}");
        let (errors, _) = check(&parse("mysql://h/db?ssl-mode=VERIFY_CA").unwrap(), FileCheck::Read);
        assert!(errors[0].contains("needs ssl-ca"), "{errors:?}");
        let (errors, _) = check(&parse("mysql://h/db?ssl-cert=/c.pem").unwrap(), FileCheck::Read);
        assert!(errors[0].contains("without ssl-key"), "{errors:?}");
        let (errors, _) = check(&parse("mysql://h/db?ssl-mode=REQUIRED&ssl-ca=/nonexistent").unwrap(), FileCheck::Read);
        assert!(errors[0].contains("cannot read /nonexistent"), "{errors:?}");
    }
}
