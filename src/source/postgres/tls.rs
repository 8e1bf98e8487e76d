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

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error as TlsError, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use crate::rules::conninfo::ConnInfo;
use crate::rules::tls_files::{certificates, effective_sslmode, private_key};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

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
    let verifier: Arc<dyn ServerCertVerifier> = match roots {
        None => Arc::new(NoVerification(provider())),
        Some(store) => {
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider())
                .build()
                .map_err(|e| format!("sslrootcert: {e}"))?;
            if mode == "verify-full" {
                webpki
            } else {
                Arc::new(ChainOnly(webpki))
            }
        }
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

/// `require` without a root certificate: encryption without authentication, as in libpq.
/// Handshake signatures are still checked, so the session is bound to the certificate it shows.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: webpki's verification, with a wrong name forgiven. webpki checks the chain (and
/// expiry) before the name, so a name error means everything else passed.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        match self.0.verify_server_cert(end_entity, intermediates, name, ocsp, now) {
            Err(TlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
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
