//! TLS to PostgreSQL with libpq's sslmodes, over rustls with the `ring` provider only.
//!
//! The driver knows three modes (disable, prefer, require) and no certificates; the meaning of
//! libpq's six comes from the rustls configuration built here:
//! - `disable`: no TLS. `allow` and `prefer`: TLS when the server offers it, plaintext when it
//!   declines (the driver cannot retry in plaintext after a failed handshake).
//! - `require`: TLS, no verification, unless `sslrootcert` is set: then the chain is verified, as
//!   libpq does with a root certificate present (the same holds for `prefer`).
//! - `verify-ca`: the chain, not the name. `verify-full`: the chain and the host name.
//! - `sslrootcert=system`: the operating system's store (rustls-native-certs).
//!
//! One crypto provider is used everywhere (`ring`), passed explicitly, so nothing depends on a
//! process-wide default that another crate could install differently.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, Error as TlsError, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use crate::rules::conninfo::ConnInfo;
use crate::rules::tls_files::{certificates, effective_sslmode, private_key};
use crate::source::tls::{self, provider, Check};

/// The driver's mode and the connector for a DSN. Files are read here, once per pool.
pub(super) fn plan(c: &ConnInfo) -> Result<(SslMode, MakeRustls), String> {
    let mode = effective_sslmode(c);
    let driver_mode = match mode {
        "disable" => SslMode::Disable,
        "allow" | "prefer" => SslMode::Prefer,
        _ => SslMode::Require,
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let roots = match c.get("sslrootcert") {
        None => None,
        Some("system") => {
            let found = rustls_native_certs::load_native_certs();
            let mut store = RootCertStore::empty();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err("sslrootcert=system: the operating system's trust store holds no certificate".into());
            }
            Some(store)
        }
        Some(path) => {
            let mut store = RootCertStore::empty();
            for cert in certificates(path).map_err(|e| format!("sslrootcert: {e}"))? {
                store.add(cert).map_err(|e| format!("sslrootcert: {path}: {e}"))?;
            }
            Some(store)
        }
    };
    // Without a root certificate, encryption without authentication, as in libpq's `require`.
    let verifier = match roots {
        None => tls::no_verification(),
        Some(store) if mode == "verify-full" => tls::verifier(store, Check::Full { name: None })?,
        Some(store) => tls::verifier(store, Check::ChainOnly)?,
    };
    let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
    let config = match (c.get("sslcert"), c.get("sslkey")) {
        (Some(cert), Some(key)) => {
            let chain = certificates(cert).map_err(|e| format!("sslcert: {e}"))?;
            let key = private_key(key).map_err(|e| format!("sslkey: {e}"))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| format!("sslcert/sslkey do not fit together: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok((driver_mode, MakeRustls { config: Arc::new(config) }))
}

/// The driver's TLS connector: one rustls configuration, a fresh handshake per connection.
#[derive(Clone)]
pub(super) struct MakeRustls {
    config: Arc<ClientConfig>,
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = TlsError;

    /// `host` is empty for a Unix socket (where the server declines TLS) and for `hostaddr` alone:
    /// then no name can match, which only `verify-full` checks, and it fails as a name mismatch.
    fn make_tls_connect(&mut self, host: &str) -> Result<RustlsConnect, TlsError> {
        let name = ServerName::try_from(host.to_string())
            .or_else(|_| ServerName::try_from("no-host-name.invalid".to_string()))
            .map_err(|_| TlsError::General("no host name to verify".into()))?;
        Ok(RustlsConnect { config: self.config.clone(), name })
    }
}

pub(super) struct RustlsConnect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<RustlsStream<S>, std::io::Error>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        Box::pin(async move { connector.connect(self.name, stream).await.map(RustlsStream) })
    }
}

pub(super) struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    /// `tls-server-end-point` (RFC 5929) for SCRAM-SHA-256-PLUS: a hash of the server's certificate.
    fn channel_binding(&self) -> ChannelBinding {
        match self.0.get_ref().1.peer_certificates().and_then(|c| c.first()) {
            Some(cert) => ChannelBinding::tls_server_end_point(super::tls_detail::end_point_hash(cert)),
            None => ChannelBinding::none(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
