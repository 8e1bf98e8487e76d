//! New MySQL sessions: our own pool manager (deadpool, as for PostgreSQL) rather than the driver's
//! pool, so each connection gets a fresh password ([`Credentials`]), the session is set up the
//! exporter's way before any rule sees it, and a statement past its timeout can be killed from a
//! connection of its own ([`MySqlManager::kill_query`]) that no pool limit holds back.
//!
//! Each new session runs two statements, once: `SELECT VERSION()` (the [`ServerIdentity`] that
//! templates see: MySQL or MariaDB, and the version) and one `SET SESSION` with the time zone (UTC, so `TIMESTAMP` values read as
//! UTC), read-only transactions, the server-side statement limit (MariaDB's `max_statement_time`,
//! MySQL's `max_execution_time`) and the lock wait limits. A rule then costs one statement per
//! evaluation.

use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use mysql_async::prelude::Queryable;
use mysql_async::{ClientIdentity, Conn, DriverError, OptsBuilder, SslOpts};

use super::error::{describe_mysql_error, MySqlConnectError};
use crate::rules::model::Database;
use crate::rules::mysql_dsn::MySqlSslMode;
use crate::rules::server::{version_parts, Flavour};
use crate::source::credentials::{scrub, Credentials};
use crate::source::seam::{ServerIdentity, ServerSlot, SESSION_NAME};

pub(super) type MySqlPool = managed::Pool<MySqlManager>;
pub(super) type MySqlConn = managed::Object<MySqlManager>;

/// MySQL's port when the DSN names none.
const DEFAULT_PORT: u16 = 3306;
/// A session idle this long is checked by TCP keepalives, so a vanished peer is noticed.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// The identity a session's `SELECT VERSION()` reports: MariaDB names itself in the text
/// (`10.11.19-MariaDB-0+deb12u1`), MySQL does not (`8.0.36`); the number is
/// `major*10000 + minor*100 + patch` (101119, 80036), 0 when the text has none.
fn identity_of(version: &str) -> ServerIdentity {
    let flavour = if version.contains("MariaDB") { Flavour::Mariadb } else { Flavour::Mysql };
    let version_num = version_parts(version).map(|[major, minor, patch]| major * 10_000 + minor * 100 + patch);
    ServerIdentity::reported(flavour, version.to_string(), version_num.unwrap_or(0))
}

/// The limits every session carries.
#[derive(Debug, Clone, Copy)]
pub(super) struct SessionLimits {
    /// The server-side statement limit: the slowest rule's timeout plus a second.
    pub(super) statement: Duration,
    /// How long a statement may wait for a lock (metadata and InnoDB row locks).
    pub(super) lock: Duration,
}

impl SessionLimits {
    /// The one `SET SESSION` statement a new session runs, worded for `flavour` (MariaDB's, else
    /// MySQL's).
    fn statement_for(self, flavour: Flavour) -> String {
        // Lock waits are whole seconds on both engines, at least one.
        let lock = self.lock.as_secs().max(1);
        let (limit, read_only) = match flavour {
            Flavour::Mariadb => {
                (format!("max_statement_time = {:.3}", self.statement.as_secs_f64()), "tx_read_only = 1")
            }
            _ => (
                format!("max_execution_time = {}", self.statement.as_millis().clamp(1, u32::MAX as u128)),
                "transaction_read_only = 1",
            ),
        };
        format!(
            "SET SESSION time_zone = '+00:00', SESSION {limit}, SESSION lock_wait_timeout = {lock}, \
             SESSION innodb_lock_wait_timeout = {lock}, SESSION {read_only}"
        )
    }
}

/// How sessions are encrypted: the driver's TLS options, and whether plaintext is the fallback.
#[derive(Clone)]
pub(super) struct MySqlTls {
    pub(super) mode: MySqlSslMode,
    ssl: Option<SslOpts>,
}

impl MySqlTls {
    /// The TLS of `database`'s DSN (its files were checked at load).
    pub(super) fn plan(database: &Database) -> Result<MySqlTls, String> {
        let c = &database.conninfo;
        let mode = MySqlSslMode::of(c)?;
        let roots: Vec<_> = c.get("ssl-ca").map(|p| std::path::PathBuf::from(p).into()).into_iter().collect();
        let identity = match (c.get("ssl-cert"), c.get("ssl-key")) {
            (Some(cert), Some(key)) => {
                Some(ClientIdentity::new(std::path::PathBuf::from(cert).into(), std::path::PathBuf::from(key).into()))
            }
            _ => None,
        };
        let verified = |skip_name: bool| {
            SslOpts::default()
                .with_root_certs(roots.clone())
                .with_disable_built_in_roots(true)
                .with_danger_skip_domain_validation(skip_name)
        };
        let ssl = match mode {
            MySqlSslMode::Disabled => None,
            // As the MySQL client: REQUIRED with a CA verifies the chain (VERIFY_CA); without, nothing.
            MySqlSslMode::Preferred | MySqlSslMode::Required if roots.is_empty() => {
                Some(SslOpts::default().with_danger_accept_invalid_certs(true))
            }
            MySqlSslMode::Preferred | MySqlSslMode::Required | MySqlSslMode::VerifyCa => Some(verified(true)),
            MySqlSslMode::VerifyIdentity => Some(verified(false)),
        };
        Ok(MySqlTls { mode, ssl: ssl.map(|s| s.with_client_identity(identity)) })
    }
}

pub(super) struct MySqlManager {
    /// Everything of a connection but the password and TLS.
    base: OptsBuilder,
    tls: MySqlTls,
    credentials: Credentials,
    limits: SessionLimits,
    /// The flavour assumed until a session tells (by the DSN's scheme).
    assumed_flavour: Flavour,
    /// What the newest session learnt of the server.
    pub(super) server: Arc<ServerSlot>,
}

impl MySqlManager {
    pub(super) fn new(
        database: &Database,
        tls: MySqlTls,
        credentials: Credentials,
        limits: SessionLimits,
    ) -> Result<MySqlManager, String> {
        let c = &database.conninfo;
        let port = match c.get("port") {
            None | Some("") => DEFAULT_PORT,
            Some(p) => p.parse().map_err(|_| "the DSN's port is not a number from 1 to 65535".to_string())?,
        };
        let base = OptsBuilder::default()
            .ip_or_hostname(c.get("host").unwrap_or("localhost"))
            .tcp_port(port)
            .user(c.get("user"))
            .pass(c.get("password"))
            .db_name(c.get("dbname"))
            .prefer_socket(false)
            .tcp_keepalive(Some(KEEPALIVE))
            .stmt_cache_size(32)
            .connect_attribute("program_name", SESSION_NAME);
        Ok(MySqlManager {
            base,
            tls,
            credentials,
            limits,
            assumed_flavour: database.assumed_flavour,
            server: Arc::new(ServerSlot::default()),
        })
    }

    /// A new connection with TLS as the DSN asks; a PREFERRED one falls back to plaintext only
    /// when the server offers no TLS at all.
    async fn connect(&self) -> Result<Conn, MySqlConnectError> {
        let mut opts = self.base.clone();
        if let Some(pw) = self.credentials.password().await.map_err(MySqlConnectError::Password)? {
            opts = opts.pass(Some(pw));
        }
        match Conn::new(opts.clone().ssl_opts(self.tls.ssl.clone())).await {
            Err(mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer))
                if self.tls.mode == MySqlSslMode::Preferred =>
            {
                Conn::new(opts.ssl_opts(None)).await.map_err(MySqlConnectError::Driver)
            }
            other => other.map_err(|e| MySqlConnectError::Tls(self.tls.mode, e)),
        }
    }

    /// Sets the session up the exporter's way (see the module doc).
    async fn set_up(&self, conn: &mut Conn) -> Result<(), mysql_async::Error> {
        let version: Option<String> = conn.query_first("SELECT VERSION()").await?;
        let identity = version.as_deref().map(identity_of);
        let flavour = identity.as_ref().map_or(self.assumed_flavour, |i| i.flavour);
        self.server.learn(identity);
        conn.query_drop(self.limits.statement_for(flavour)).await
    }

    /// Kills the statement running on session `id` from a connection of its own (outside the pool,
    /// so an exhausted pool cannot hold the kill back), then closes that connection.
    /// The error is scrubbed of every secret.
    pub(super) async fn kill_query(&self, id: u32) -> Result<(), String> {
        let mut conn = self.connect().await.map_err(|e| scrub(&self.credentials.secrets, &e.to_string()))?;
        let killed = conn.query_drop(format!("KILL QUERY {id}")).await;
        let _ = conn.disconnect().await;
        killed.map_err(|e| scrub(&self.credentials.secrets, &describe_mysql_error(&e)))
    }
}

impl managed::Manager for MySqlManager {
    type Type = Conn;
    type Error = MySqlConnectError;

    async fn create(&self) -> Result<Conn, MySqlConnectError> {
        let mut conn = self.connect().await?;
        self.set_up(&mut conn).await.map_err(MySqlConnectError::Driver)?;
        Ok(conn)
    }

    async fn recycle(&self, conn: &mut Conn, _: &Metrics) -> RecycleResult<MySqlConnectError> {
        // Verified before reuse: a half-open session fails here within the pool's recycle timeout
        // instead of costing a rule its whole timeout.
        match conn.ping().await {
            Ok(()) => Ok(()),
            Err(_) => Err(RecycleError::message("the session failed its check before reuse")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_session_statements() {
        let maria = identity_of("10.11.19-MariaDB-0+deb12u1");
        assert_eq!(
            (maria.flavour, maria.version_num, maria.major(), maria.minor()),
            (Flavour::Mariadb, 101119, 10, 11)
        );
        assert_eq!(maria.version, "10.11.19-MariaDB-0+deb12u1");
        // What the handshake of an older MariaDB says, for MySQL 5 replicas.
        let prefixed = identity_of("5.5.5-10.11.19-MariaDB-0+deb12u1");
        assert_eq!((prefixed.flavour, prefixed.version_num), (Flavour::Mariadb, 101119));
        let mysql = identity_of("8.0.36");
        assert_eq!((mysql.flavour, mysql.version_num, mysql.major(), mysql.minor()), (Flavour::Mysql, 80036, 8, 0));
        assert_eq!(identity_of("garbage").version_num, 0);
        let limits = SessionLimits { statement: Duration::from_millis(2500), lock: Duration::from_millis(300) };
        let maria = limits.statement_for(Flavour::Mariadb);
        assert!(maria.contains("max_statement_time = 2.500") && maria.contains("lock_wait_timeout = 1"), "{maria}");
        assert!(limits.statement_for(Flavour::Mysql).contains("max_execution_time = 2500"));
    }
}
