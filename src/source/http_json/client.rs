//! The HTTP client of one endpoint: TLS through a preconfigured rustls config (ring, the one crypto
//! provider of the binary), redirects, proxy, and the credentials it sends.
//!
//! Redirects are followed at most [`MAX_REDIRECTS`] times. A redirect to another host is followed
//! only when the endpoint sends no credentials (basic auth, token, or a header other than
//! `Accept`/`User-Agent`/`Content-Type`): otherwise the 3xx itself is the answer and the request
//! fails, so a token never travels to a host it was not written for.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::RootCertStore;

use crate::rules::model::{Endpoint, Proxy};
use crate::source::tls::{self, provider, Check};

pub const MAX_REDIRECTS: usize = 5;

/// Headers that carry no credential.
const HARMLESS_HEADERS: [&str; 3] = ["accept", "user-agent", "content-type"];

pub fn build(e: &Endpoint) -> Result<reqwest::Client, String> {
    let tls = tls_config(e)?;
    let mut headers = HeaderMap::new();
    for (k, v) in &e.headers {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("header name '{k}' is not valid"))?;
        let mut value =
            HeaderValue::from_str(v.expose()).map_err(|_| format!("the value of header '{k}' is not valid"))?;
        value.set_sensitive(!HARMLESS_HEADERS.contains(&k.to_ascii_lowercase().as_str()));
        headers.insert(name, value);
    }
    let has_credentials =
        e.auth.is_some() || e.headers.iter().any(|(k, _)| !HARMLESS_HEADERS.contains(&k.to_ascii_lowercase().as_str()));
    let origin =
        reqwest::Url::parse(&e.url).ok().map(|u| (u.host_str().map(str::to_string), u.port_or_known_default()));
    let redirects = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        let to = (attempt.url().host_str().map(str::to_string), attempt.url().port_or_known_default());
        if has_credentials && origin.as_ref() != Some(&to) {
            return attempt.stop();
        }
        attempt.follow()
    });
    let mut builder = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .default_headers(headers)
        .redirect(redirects)
        .timeout(e.timeout)
        .connect_timeout(e.timeout)
        .user_agent(concat!("sql-signal-exporter/", env!("CARGO_PKG_VERSION")));
    builder = match &e.proxy {
        Proxy::None => builder.no_proxy(),
        Proxy::FromEnv => builder,
        Proxy::Url(url) => {
            builder.proxy(reqwest::Proxy::all(url.expose()).map_err(|_| "the proxy URL is not valid".to_string())?)
        }
    };
    builder.build().map_err(|e| format!("cannot build the HTTP client: {}", e.without_url()))
}

fn tls_config(e: &Endpoint) -> Result<rustls::ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    match &e.tls.ca_file {
        Some(file) => {
            let certs = CertificateDer::pem_file_iter(file)
                .map_err(|err| format!("cannot read ca_file {}: {err}", file.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|err| format!("ca_file {}: {err}", file.display()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!("ca_file {} holds no certificate", file.display()));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| format!("TLS: {err}"))?;
    let name = match &e.tls.server_name {
        Some(n) => Some(ServerName::try_from(n.clone()).map_err(|_| format!("server_name '{n}' is not a valid name"))?),
        None => None,
    };
    let verifier =
        if e.tls.insecure_skip_verify { tls::no_verification() } else { tls::verifier(roots, Check::Full { name })? };
    let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
    let mut config = match &e.tls.client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|err| format!("cannot read cert_file {}: {err}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|err| format!("cert_file {}: {err}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|_| format!("key_file {} holds no private key", key.display()))?;
            builder.with_client_auth_cert(chain, key).map_err(|err| format!("client certificate: {err}"))?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
