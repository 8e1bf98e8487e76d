//! libpq connection strings, parsed once at load into [`ConnInfo`].
//!
//! A DSN is written in either of libpq's two syntaxes: a URL (`postgresql://user:pw@host:5432/db?k=v`)
//! or `key=value` words (`host=db user=me password='a b'`). Both become one list of libpq keywords,
//! so every later step (the source that connects, `--check-rules`, the warning about a password in
//! the file) reads the same parsed form and nothing parses the text again. The parser is our own
//! because the driver's accepts only part of libpq's keys and values (its `sslmode` knows three of
//! six modes), and the loader must not depend on the driver.
//!
//! No message here ever contains the DSN or a piece of it: it may hold a password.

use std::collections::BTreeMap;

use super::schema_errors::edit_distance;

/// The libpq keywords this exporter understands. Others are refused at load, so a typo such as
/// `sslmod=require` is an error instead of a silent plaintext connection.
pub const KNOWN_KEYS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "connect_timeout",
    "options",
    "application_name",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "channel_binding",
    "keepalives",
    "keepalives_idle",
    "target_session_attrs",
    "load_balance_hosts",
];

/// A parsed connection string: libpq keyword → value, with URL parts mapped to their keywords.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct ConnInfo {
    params: BTreeMap<String, String>,
}

// Values may be secret: never print them.
impl std::fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnInfo").field("keys", &self.params.keys().collect::<Vec<_>>()).finish()
    }
}

impl ConnInfo {
    /// The value of a libpq keyword, if the DSN sets it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    /// Every keyword and value the DSN sets, keywords sorted.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// A parsed DSN of another syntax (see `mysql_dsn`), its keys already checked.
    pub(super) fn from_params(params: BTreeMap<String, String>) -> ConnInfo {
        ConnInfo { params }
    }

    /// Sets a keyword (for defaults the exporter adds).
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.params.insert(key.to_string(), value.into());
    }

    /// Parses either syntax. The error never quotes the text.
    pub fn parse(text: &str) -> Result<ConnInfo, String> {
        let text = text.trim();
        let params = if let Some(rest) = text.strip_prefix("postgresql://").or_else(|| text.strip_prefix("postgres://"))
        {
            parse_url(rest, &LIBPQ_URL)?
        } else {
            parse_words(text)?
        };
        for key in params.keys() {
            if !KNOWN_KEYS.contains(&key.as_str()) {
                return Err(format!(
                    "the DSN sets {}, which is not a libpq connection parameter this exporter knows; known: {}",
                    describe_key(key),
                    KNOWN_KEYS.join(", ")
                ));
            }
        }
        Ok(ConnInfo { params })
    }
}

/// A key as it may appear in a message. Keys are not secret, but a mangled DSN (an unquoted space
/// in a password) can put a piece of a secret where a key is expected, so a key is shown only when
/// it is a near miss of a known one, which is also when showing it helps.
fn describe_key(key: &str) -> String {
    describe_key_among(key, KNOWN_KEYS)
}

/// [`describe_key`] against another list of known keys.
pub(super) fn describe_key_among(key: &str, known_keys: &[&str]) -> String {
    match known_keys.iter().find(|k| key.len() <= 40 && edit_distance(k, key) <= 2) {
        Some(known) if *known != key => format!("'{key}' (did you mean '{known}'?)"),
        Some(_) => format!("'{key}'"),
        None => "an unknown parameter".to_string(),
    }
}

const HELP: &str = "see https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING";

/// What a URL DSN is, for the messages about one that is malformed.
pub(super) struct UrlSyntax {
    /// What it should have been, e.g. `libpq URL`.
    pub(super) name: &'static str,
    /// Where its syntax is documented.
    pub(super) help: &'static str,
}

/// libpq's URL syntax.
const LIBPQ_URL: UrlSyntax = UrlSyntax { name: "libpq URL", help: HELP };

/// `user:pw@host:port,host2/db?k=v` (after the scheme): libpq's URL, which MySQL's URL DSN shares
/// (with `dbname` for the path and the query's own keys).
pub(super) fn parse_url(rest: &str, syntax: &UrlSyntax) -> Result<BTreeMap<String, String>, String> {
    let invalid = |what: &str| format!("the DSN is not a valid {} ({what}); {}", syntax.name, syntax.help);
    let mut params = BTreeMap::new();
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (before_query, None),
    };
    // The password may contain '@' only percent-encoded, as in libpq: split at the last '@'.
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if let Some(userinfo) = userinfo {
        let (user, password) = match userinfo.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (userinfo, None),
        };
        if !user.is_empty() {
            params.insert("user".into(), decode(user).ok_or_else(|| invalid("bad percent-encoding in the user"))?);
        }
        if let Some(p) = password {
            params.insert("password".into(), decode(p).ok_or_else(|| invalid("bad percent-encoding in the password"))?);
        }
    }
    if !hosts.is_empty() {
        let (mut host_list, mut port_list) = (Vec::new(), Vec::new());
        for spec in hosts.split(',') {
            let (host, port) = split_host_port(spec).ok_or_else(|| invalid("a host is malformed"))?;
            host_list.push(decode(host).ok_or_else(|| invalid("bad percent-encoding in a host"))?);
            port_list.push(port.to_string());
        }
        if host_list.iter().any(|h| !h.is_empty()) {
            params.insert("host".into(), host_list.join(","));
        }
        if port_list.iter().any(|p| !p.is_empty()) {
            for p in &port_list {
                if !p.is_empty() && p.parse::<u16>().is_err() {
                    return Err(invalid("a port is not a number from 1 to 65535"));
                }
            }
            params.insert("port".into(), port_list.join(","));
        }
    }
    if let Some(db) = path.filter(|p| !p.is_empty()) {
        params.insert("dbname".into(), decode(db).ok_or_else(|| invalid("bad percent-encoding in the database name"))?);
    }
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| invalid("a query parameter has no '='"))?;
        let key = decode(k).ok_or_else(|| invalid("bad percent-encoding in a parameter name"))?;
        let value = decode(v).ok_or_else(|| invalid("bad percent-encoding in a parameter value"))?;
        params.insert(key, value);
    }
    Ok(params)
}

/// `host:port`, `[v6]:port`, `host` or `:port`.
fn split_host_port(spec: &str) -> Option<(&str, &str)> {
    if let Some(rest) = spec.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => "",
            p => p.strip_prefix(':')?,
        };
        return Some((host, port));
    }
    Some(match spec.rsplit_once(':') {
        Some((h, p)) => (h, p),
        None => (spec, ""),
    })
}

/// Percent-decoding (`%40` → `@`); `None` on a malformed escape or non-UTF-8 result.
fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `key=value key='quoted \' value'`, as libpq reads it.
fn parse_words(text: &str) -> Result<BTreeMap<String, String>, String> {
    let invalid = |what: String| format!("the DSN is not a valid libpq URL or key=value string ({what}); {HELP}");
    let mut params = BTreeMap::new();
    let mut chars = text.chars().peekable();
    let mut word = 0;
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        word += 1;
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(invalid(format!("word {word} is not key=value")));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(invalid(format!("the quoted value of {} is not closed", describe_key(&key)))),
                    Some('\'') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(invalid("a value ends with a backslash".into())),
                    },
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        if key.is_empty() {
            return Err(invalid(format!("word {word} has no key")));
        }
        params.insert(key, value);
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_map_to_libpq_keywords() {
        let c =
            ConnInfo::parse("postgresql://me:p%40ss@db.example:6432,b:5433/horreum?sslmode=disable&application_name=x")
                .unwrap();
        assert_eq!(c.get("user"), Some("me"));
        assert_eq!(c.get("password"), Some("p@ss"));
        assert_eq!(c.get("host"), Some("db.example,b"));
        assert_eq!(c.get("port"), Some("6432,5433"));
        assert_eq!(c.get("dbname"), Some("horreum"));
        assert_eq!(c.get("sslmode"), Some("disable"));
        let c = ConnInfo::parse("postgres://[::1]:5432/x").unwrap();
        assert_eq!(c.get("host"), Some("::1"));
        assert_eq!(ConnInfo::parse("postgresql://").unwrap(), ConnInfo::default());
        let c = ConnInfo::parse("postgresql:///db?host=%2Fvar%2Frun%2Fpostgresql").unwrap();
        assert_eq!(c.get("host"), Some("/var/run/postgresql"));
    }

    #[test]
    fn words_are_read_as_libpq_reads_them() {
        let c = ConnInfo::parse(r"host=a port = 5432 password='it\'s a secret' user=me\ you").unwrap();
        assert_eq!(c.get("host"), Some("a"));
        assert_eq!(c.get("port"), Some("5432"));
        assert_eq!(c.get("password"), Some("it's a secret"));
        assert_eq!(c.get("user"), Some("me you"));
        assert_eq!(ConnInfo::parse("").unwrap(), ConnInfo::default());
    }

    #[test]
    fn errors_never_quote_the_text() {
        for bad in [
            "host=a hunter2",
            "host=a password='hunter2",
            "postgresql://u:hunter2@h:99999/db",
            "postgresql://u:hunter2%zz@h/db",
            "postgresql://h/db?hunter2",
            "host=a hunter2=x",
            "host=a sslmod=hunter2",
        ] {
            let e = ConnInfo::parse(bad).unwrap_err();
            assert!(!e.contains("hunter2"), "{bad}: {e}");
        }
        assert!(ConnInfo::parse("host=a sslmod=require").unwrap_err().contains("'sslmod'"));
    }

    #[test]
    fn debug_shows_keys_only() {
        let c = ConnInfo::parse("password=hunter2 host=a").unwrap();
        let shown = format!("{c:?}");
        assert!(shown.contains("password") && !shown.contains("hunter2"), "{shown}");
    }
}
