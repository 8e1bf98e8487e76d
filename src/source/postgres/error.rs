//! The words of driver, pool and server errors: the server's own message when there is one.

pub(super) fn describe_pool_error(e: &deadpool_postgres::PoolError) -> String {
    use deadpool_postgres::PoolError as P;
    match e {
        P::Backend(err) => describe_pg_error(err),
        P::Timeout(_) => "timed out waiting for a connection".to_string(),
        other => other.to_string(),
    }
}

/// The server's message when there is one (it is the useful part), else the driver's text.
pub fn describe_pg_error(e: &tokio_postgres::Error) -> String {
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
