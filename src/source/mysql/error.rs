//! The words of MySQL driver, pool and server errors: a server error by its code, SQLSTATE and
//! text; a TLS failure named with the `ssl-mode` that asked for it. The source scrubs every message
//! of its secrets before it leaves.

use mysql_async::{Error, IoError};

use crate::rules::mysql_dsn::MySqlSslMode;

/// Why a new connection could not be made.
#[derive(Debug)]
pub(super) enum MySqlConnectError {
    Driver(Error),
    /// The connection under `ssl-mode`: a TLS failure is named with the mode.
    Tls(MySqlSslMode, Error),
    /// The password could not be obtained; the text names the file or program, never a secret.
    Password(String),
}

impl std::fmt::Display for MySqlConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MySqlConnectError::Driver(e) => f.write_str(&describe_mysql_error(e)),
            MySqlConnectError::Tls(MySqlSslMode::VerifyCa, e)
                if tls_cause(e).is_some_and(|c| c.contains("not valid for name")) =>
            {
                write!(
                    f,
                    "the TLS handshake failed under ssl-mode=VERIFY_CA: {}; the MySQL driver cannot skip the host name check with this rustls (its VERIFY_CA matches an error text rustls no longer prints), so VERIFY_CA verifies the name too: connect by a name the certificate holds",
                    tls_cause(e).unwrap_or_default()
                )
            }
            MySqlConnectError::Tls(mode, e) if tls_cause(e).is_some() => write!(
                f,
                "the TLS handshake failed under ssl-mode={}: {} (check ssl-ca, the server's certificate and the host name in the DSN)",
                mode.name(),
                tls_cause(e).unwrap_or_default()
            ),
            MySqlConnectError::Tls(mode, e @ Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer)) => {
                write!(
                    f,
                    "the server offers no TLS but ssl-mode={} requires it: {} (enable TLS on the server, or lower ssl-mode)",
                    mode.name(),
                    describe_mysql_error(e)
                )
            }
            MySqlConnectError::Tls(_, e) => f.write_str(&describe_mysql_error(e)),
            MySqlConnectError::Password(m) => f.write_str(m),
        }
    }
}

/// The TLS error behind a driver error, however deep the driver wrapped it.
fn tls_cause(e: &Error) -> Option<String> {
    if let Error::Io(IoError::Tls(t)) = e {
        return Some(t.to_string());
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(t) = s.downcast_ref::<rustls::Error>() {
            return Some(t.to_string());
        }
        if let Some(t) = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|i| i.downcast_ref::<rustls::Error>())
        {
            return Some(t.to_string());
        }
        source = s.source();
    }
    None
}

pub(super) fn describe_mysql_pool_error(e: &deadpool::managed::PoolError<MySqlConnectError>) -> String {
    use deadpool::managed::PoolError as P;
    match e {
        P::Backend(err) => err.to_string(),
        P::Timeout(_) => "timed out waiting for a connection".to_string(),
        other => other.to_string(),
    }
}

/// A server error as `message (error 1146, SQLSTATE 42S02)`; anything else as the driver words it,
/// with its causes.
pub(super) fn describe_mysql_error(e: &Error) -> String {
    if let Error::Server(s) = e {
        return format!("{} (error {}, SQLSTATE {})", s.message, s.code, s.state);
    }
    let mut m = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !m.contains(&text) {
            m.push_str(&format!(": {text}"));
        }
        source = s.source();
    }
    m
}
