//! Ports, randomness, quoting and log reading.

use std::collections::hash_map::RandomState;
use std::collections::BTreeSet;
use std::fs;
use std::hash::{BuildHasher, Hash, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};

use crate::free_loopback_port;

/// the same port to two instances.
static RESERVED_PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
/// Makes directory names and random seeds unique within this process.
pub(crate) static COUNTER: AtomicU64 = AtomicU64::new(0);

// ---- ports ------------------------------------------------------------------

pub(crate) fn reserved_ports() -> std::sync::MutexGuard<'static, BTreeSet<u16>> {
    RESERVED_PORTS.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn reserve_port(port: u16) -> bool {
    reserved_ports().insert(port)
}

pub(crate) fn release_port(port: u16) {
    reserved_ports().remove(&port);
}

/// A free loopback port that no other instance of this process holds.
pub(crate) fn pick_and_reserve_port() -> Result<u16> {
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
pub(crate) fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0).hash(&mut h);
    std::process::id().hash(&mut h);
    COUNTER.fetch_add(1, Ordering::Relaxed).hash(&mut h);
    h.finish()
}

/// 32 hex digits: safe in URLs, SQL string literals and shell words.
pub(crate) fn generate_password() -> String {
    format!("{:016x}{:016x}", random_u64(), random_u64())
}

/// `"name"` with embedded quotes doubled.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn percent_encode(s: &str) -> String {
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
pub(crate) fn log_tail(path: &Path, n: usize) -> String {
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
pub(crate) fn read_from(path: &Path, offset: u64) -> String {
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
    use std::ffi::OsStr;

    use super::*;
    use crate::command::shell_quote;
    use crate::locate::parse_version;

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
