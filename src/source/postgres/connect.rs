//! New connections: our own pool manager, so each one can get a fresh password ([`Credentials`])
//! and our TLS. deadpool-postgres' manager connects with one fixed configuration; rotating
//! credentials need the password at connect time.

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use deadpool_postgres::ClientWrapper;
use tokio_postgres::Config;

use super::tls::MakeRustls;
use crate::source::credentials::Credentials;

pub(super) type Pool = managed::Pool<PgManager>;
pub(super) type Client = managed::Object<PgManager>;

pub(super) use super::error::ConnectError;

pub(super) struct PgManager {
    pub(super) config: Config,
    pub(super) tls: MakeRustls,
    pub(super) credentials: Credentials,
}

impl PgManager {
    pub(super) fn new(config: Config, tls: MakeRustls, credentials: Credentials) -> PgManager {
        PgManager { config, tls, credentials }
    }
}

impl managed::Manager for PgManager {
    type Type = ClientWrapper;
    type Error = ConnectError;

    async fn create(&self) -> Result<ClientWrapper, ConnectError> {
        let mut config = self.config.clone();
        if let Some(pw) = self.credentials.password().await.map_err(ConnectError::Password)? {
            config.password(pw);
        }
        let (client, connection) = config.connect(self.tls.clone()).await.map_err(ConnectError::Driver)?;
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(ClientWrapper::new(client, task))
    }

    async fn recycle(&self, client: &mut ClientWrapper, _: &Metrics) -> RecycleResult<ConnectError> {
        if client.is_closed() {
            return Err(RecycleError::message("connection closed"));
        }
        // Verified before reuse: a half-open session (the peer gone without a word) fails here within
        // the pool's recycle timeout instead of costing a rule its whole timeout.
        match client.simple_query("").await {
            Ok(_) => Ok(()),
            Err(_) => Err(RecycleError::message("the session failed its check before reuse")),
        }
    }
}
