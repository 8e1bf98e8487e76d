//! TLS pieces every kind of source shares: the one crypto provider (`ring`, passed explicitly so no
//! process-wide default matters) and the one certificate verifier, whose [`Check`] says how much of
//! the server's certificate is verified.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error as TlsError, RootCertStore, SignatureScheme};

/// The crypto provider of every TLS client and server in the binary.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// How much of the server's certificate is verified.
#[derive(Debug)]
pub enum Check {
    /// The chain and the name: the name the connection uses, or `name` when set (an endpoint's
    /// `server_name`).
    Full { name: Option<ServerName<'static>> },
    /// The chain, not the name (libpq's `verify-ca`). webpki checks the chain and expiry before the
    /// name, so a name error means everything else passed.
    ChainOnly,
    /// Nothing but the handshake signatures, which bind the session to the certificate shown
    /// (libpq's `require` without a root certificate; an endpoint's `insecure_skip_verify`).
    Nothing,
}

/// The verifier for `check` against `roots` (unused by [`Check::Nothing`]).
pub fn verifier(roots: RootCertStore, check: Check) -> Result<Arc<dyn ServerCertVerifier>, String> {
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| format!("TLS: {e}"))?;
    Ok(Arc::new(Verifier { webpki: Some(webpki), provider: provider(), check }))
}

/// [`Check::Nothing`], which needs no roots (webpki refuses to build a verifier without any).
pub fn no_verification() -> Arc<dyn ServerCertVerifier> {
    Arc::new(Verifier { webpki: None, provider: provider(), check: Check::Nothing })
}

#[derive(Debug)]
struct Verifier {
    /// `None` only with [`Check::Nothing`].
    webpki: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
    check: Check,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        let webpki = match (&self.check, &self.webpki) {
            (Check::Nothing, _) => return Ok(ServerCertVerified::assertion()),
            (_, Some(w)) => w,
            (_, None) => return Err(TlsError::General("no root certificates to verify against".into())),
        };
        match &self.check {
            Check::Full { name: wanted } => {
                webpki.verify_server_cert(end_entity, intermediates, wanted.as_ref().unwrap_or(name), ocsp, now)
            }
            _ => match webpki.verify_server_cert(end_entity, intermediates, name, ocsp, now) {
                Err(TlsError::InvalidCertificate(
                    CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
                )) => Ok(ServerCertVerified::assertion()),
                other => other,
            },
        }
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls12_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls13_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
