//! The words of driver, pool and server errors: the TLS cause when TLS failed, else the server's
//! own message when there is one.

/// Why a new connection could not be made.
#[derive(Debug)]
pub(super) enum ConnectError {
    Driver(tokio_postgres::Error),
    /// The password could not be obtained; the text names the file or program, never a secret.
    Password(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Driver(e) => f.write_str(&describe_pg_error(e)),
            ConnectError::Password(m) => f.write_str(m),
        }
    }
}

pub(super) fn describe_pool_error(e: &deadpool::managed::PoolError<ConnectError>) -> String {
    use deadpool::managed::PoolError as P;
    match e {
        P::Backend(err) => err.to_string(),
        P::PostCreateHook(deadpool::managed::HookError::Backend(err)) => err.to_string(),
        P::Timeout(_) => "timed out waiting for a connection".to_string(),
        other => other.to_string(),
    }
}

/// The server's message when there is one (it is the useful part), else the driver's text.
pub fn describe_pg_error(e: &tokio_postgres::Error) -> String {
    if let Some(tls) = super::tls_detail::describe(e) {
        return tls;
    }
    if let Some(db) = e.as_db_error() {
        let mut m = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(hint) = db.hint() {
            m.push_str(&format!("; hint: {hint}"));
        }
        return m;
    }
    let mut m = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        m.push_str(&format!(": {s}"));
        source = s.source();
    }
    m
}
