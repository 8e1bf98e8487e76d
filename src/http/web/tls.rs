//! The TLS side of `--web.config.file`: a rustls server config built from the validated settings,
//! rebuilt when the certificate, key or client CA file changes on disk.
//!
//! exporter-toolkit re-reads its certificates for every new connection, so a rotated certificate
//! (cert-manager, a mounted Kubernetes secret) is served without a restart. Here a new connection
//! costs one `stat` per file; the files are read and parsed only when one of them changed. A broken
//! rotation (unreadable file, key not matching the certificate) keeps the previous certificate in
//! service and is logged once per change.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;

use crate::http::web::config::{ClientAuth, Pem, TlsSettings};

/// What identifies a file's content without reading it.
#[derive(Clone, PartialEq, Debug)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: u64,
}

fn stamp(pem: &Pem) -> Option<Stamp> {
    let Pem::File(path) = pem else { return None };
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    use std::os::unix::fs::MetadataExt;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        #[cfg(unix)]
        inode: meta.ino(),
    })
}

fn stamps(s: &TlsSettings) -> Vec<Option<Stamp>> {
    [Some(&s.cert), Some(&s.key), s.client_ca.as_ref()].into_iter().flatten().map(stamp).collect()
}

/// The server config in force and the settings and file stamps it was built from.
struct Built {
    settings: Arc<TlsSettings>,
    stamps: Vec<Option<Stamp>>,
    config: Arc<ServerConfig>,
}

/// The TLS acceptor's state; cheap to consult for every connection.
pub struct Tls {
    current: ArcSwap<Built>,
    rebuilding: Mutex<()>,
}

impl Tls {
    /// Builds the server config, reading every file; fails with a message naming what failed.
    pub fn new(settings: TlsSettings) -> Result<Tls, String> {
        let stamps = stamps(&settings);
        let config = Arc::new(build(&settings)?);
        Ok(Tls {
            current: ArcSwap::from_pointee(Built { settings: Arc::new(settings), stamps, config }),
            rebuilding: Mutex::new(()),
        })
    }

    /// The config for a new connection: rebuilt first when a file changed since the last build.
    pub fn config(&self) -> Arc<ServerConfig> {
        let built = self.current.load();
        let now = stamps(&built.settings);
        if now == built.stamps {
            return built.config.clone();
        }
        // One rebuild at a time; others arriving meanwhile find it done.
        let _guard = self.rebuilding.lock().unwrap_or_else(|p| p.into_inner());
        let built = self.current.load_full();
        let now = stamps(&built.settings);
        if now == built.stamps {
            return built.config.clone();
        }
        let config = match build(&built.settings) {
            Ok(config) => {
                tracing::info!("TLS certificate files changed; new connections use them");
                Arc::new(config)
            }
            Err(e) => {
                tracing::error!("TLS certificate files changed but cannot be used; keeping the previous ones: {e}");
                built.config.clone()
            }
        };
        self.current.store(Arc::new(Built { settings: built.settings.clone(), stamps: now, config: config.clone() }));
        config
    }

    /// Applies settings from a reloaded file; keeps the current ones when they cannot be built.
    pub fn replace(&self, settings: TlsSettings) -> Result<(), String> {
        if *self.current.load().settings == settings {
            return Ok(());
        }
        let stamps = stamps(&settings);
        let config = Arc::new(build(&settings)?);
        let _guard = self.rebuilding.lock().unwrap_or_else(|p| p.into_inner());
        self.current.store(Arc::new(Built { settings: Arc::new(settings), stamps, config }));
        Ok(())
    }
}

fn read(pem: &Pem, key: &str) -> Result<Vec<u8>, String> {
    match pem {
        Pem::File(path) => std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", pem.describe(key))),
        Pem::Inline(text) => Ok(text.as_bytes().to_vec()),
    }
}

fn certificates(pem: &Pem, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read(pem, key)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not PEM certificates: {e}", pem.describe(key)))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", pem.describe(key)));
    }
    Ok(certs)
}

/// The ring provider restricted to what the settings allow. Passed explicitly, never installed as
/// the process default, so no other part of the binary can end up with a second provider.
fn provider(s: &TlsSettings) -> CryptoProvider {
    let mut p = rustls::crypto::ring::default_provider();
    if let Some(wanted) = &s.tls12_suites {
        let all = rustls::crypto::ring::ALL_CIPHER_SUITES;
        let tls13 = all.iter().filter(|c| c.tls13().is_some()).copied();
        let tls12 = wanted.iter().filter_map(|w| all.iter().find(|c| format!("{:?}", c.suite()) == *w).copied());
        p.cipher_suites = tls13.chain(tls12).collect();
    }
    if let Some(wanted) = &s.kx_groups {
        let all = rustls::crypto::ring::ALL_KX_GROUPS;
        p.kx_groups =
            wanted.iter().filter_map(|w| all.iter().find(|g| format!("{:?}", g.name()) == *w).copied()).collect();
    }
    p
}

fn build(s: &TlsSettings) -> Result<ServerConfig, String> {
    let provider = Arc::new(provider(s));
    let mut versions = Vec::new();
    if s.tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if s.tls12 {
        versions.push(&rustls::version::TLS12);
    }
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls_server_config: {e}"))?;
    let builder = match (&s.client_ca, s.client_auth) {
        (Some(ca), ClientAuth::VerifyIfGiven | ClientAuth::RequireAndVerify) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates(ca, "client_ca_file")? {
                roots.add(cert).map_err(|e| format!("{}: {e}", ca.describe("client_ca_file")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier =
                if s.client_auth == ClientAuth::VerifyIfGiven { verifier.allow_unauthenticated() } else { verifier };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| format!("client_ca_file: {e}"))?)
        }
        _ => builder.with_no_client_auth(),
    };
    let certs = certificates(&s.cert, "cert_file")?;
    let key_bytes = read(&s.key, "key_file")?;
    // The key's text never goes into a message.
    let key = PrivateKeyDer::from_pem_slice(&key_bytes)
        .map_err(|_| format!("{}: no PEM private key in it", s.key.describe("key_file")))?;
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        format!("{} and {} do not make a usable pair: {e}", s.cert.describe("cert_file"), s.key.describe("key_file"))
    })?;
    config.ignore_client_order = s.prefer_server_order;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
