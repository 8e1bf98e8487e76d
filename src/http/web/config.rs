//! Reads and validates a `--web.config.file` in exporter-toolkit's format, so a file written for any
//! Prometheus exporter works here unchanged, or is refused with the key that cannot be honoured.
//!
//! Everything is checked here, once, at start and on reload: the request path only reads the result.
//! rustls implements less than Go's crypto/tls (no TLS 1.0/1.1, no CBC suites, no P-521 with ring),
//! so keys asking for those are errors, never silently weakened or ignored; keys that change
//! nothing here are warnings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use warp::http::{HeaderName, HeaderValue};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    tls_server_config: Option<TlsSpec>,
    http_server_config: Option<HttpSpec>,
    basic_auth_users: Option<BTreeMap<String, String>>,
    basic_auth_excluded_paths: Option<Vec<String>>,
    rate_limit: Option<RateLimitSpec>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TlsSpec {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HttpSpec {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RateLimitSpec {
    interval: Option<String>,
    burst: Option<u32>,
}

/// PEM text, given inline or as a file read when certificates are (re)loaded.
#[derive(Clone, PartialEq)]
pub enum Pem {
    File(PathBuf),
    Inline(String),
}

impl Pem {
    /// What to call it in a message (never the inline text: it may be a private key).
    pub fn describe(&self, key: &str) -> String {
        match self {
            Pem::File(p) => format!("{key} {}", p.display()),
            Pem::Inline(_) => format!("inline {key}"),
        }
    }
}

/// `client_auth_type`, as far as rustls can honour it.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum ClientAuth {
    None,
    VerifyIfGiven,
    RequireAndVerify,
}

/// A validated `tls_server_config`.
#[derive(Clone, PartialEq)]
pub struct TlsSettings {
    pub cert: Pem,
    pub key: Pem,
    pub client_ca: Option<Pem>,
    pub client_auth: ClientAuth,
    pub tls12: bool,
    pub tls13: bool,
    /// TLS 1.2 suites by IANA name, in preference order; `None` keeps rustls's.
    pub tls12_suites: Option<Vec<String>>,
    /// Key exchange groups by rustls name, in preference order; `None` keeps rustls's.
    pub kx_groups: Option<Vec<String>>,
    pub prefer_server_order: bool,
}

/// A validated web config file.
pub struct WebConfig {
    pub tls: Option<TlsSettings>,
    /// User name → bcrypt hash.
    pub users: BTreeMap<String, String>,
    /// Paths served without basic auth, besides `/-/healthy` and `/-/ready`.
    pub open_paths: Vec<String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// One request per interval, with bursts of this many.
    pub rate_limit: Option<(Duration, u32)>,
}

/// TLS 1.2 suites rustls (ring) implements, by the names Go and IANA use.
pub const TLS12_SUITES: &[&str] = &[
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
];
const TLS13_SUITES: &[&str] = &["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"];

/// exporter-toolkit's headers, and the values it accepts where it restricts them.
const HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// Reads and validates `path`; returns the config and its warnings, or the first error.
/// Relative paths inside are relative to the file's directory, as in exporter-toolkit.
pub fn load(path: &Path) -> Result<(WebConfig, Vec<String>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    parse(&text, dir).map_err(|e| format!("{}: {e}", path.display()))
}

/// Validates the text of a web config file.
pub fn parse(text: &str, dir: &Path) -> Result<(WebConfig, Vec<String>), String> {
    let spec: FileSpec = serde_yaml::from_str::<Option<FileSpec>>(text).map_err(|e| e.to_string())?.unwrap_or_default();
    let mut warnings = Vec::new();
    let tls = match spec.tls_server_config {
        Some(t) => tls_settings(t, dir, &mut warnings)?,
        None => None,
    };
    let users = spec.basic_auth_users.unwrap_or_default();
    for (user, hash) in &users {
        // The hash is never quoted back: it is as good as a password to an offline attacker.
        hash.parse::<bcrypt::HashParts>()
            .map_err(|_| format!("basic_auth_users: the password of user '{user}' is not a bcrypt hash ($2y$…)"))?;
    }
    if !users.is_empty() && tls.is_none() {
        warnings.push("basic_auth_users without tls_server_config: passwords cross the network in clear text".into());
    }
    let http = spec.http_server_config.unwrap_or_default();
    if http.http2 == Some(true) {
        warnings.push("http_server_config.http2: changes nothing; this exporter serves HTTP/1.1 only".into());
    }
    let mut headers = Vec::new();
    for (name, value) in http.headers.unwrap_or_default() {
        let Some((_, allowed)) = HEADERS.iter().find(|(n, _)| *n == name) else {
            return Err(format!("http_server_config.headers: HTTP header '{name}' can not be configured"));
        };
        if value.is_empty() {
            continue;
        }
        if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
            return Err(format!("http_server_config.headers: {name} must be one of {allowed:?}, not '{value}'"));
        }
        let v =
            HeaderValue::from_str(&value).map_err(|_| format!("http_server_config.headers: {name}: invalid value"))?;
        let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("http_server_config.headers: '{name}'"))?;
        headers.push((n, v));
    }
    let rate_limit = match spec.rate_limit {
        None => None,
        Some(r) => rate_limit(r)?,
    };
    let open_paths = spec.basic_auth_excluded_paths.unwrap_or_default();
    Ok((WebConfig { tls, users, open_paths, headers, rate_limit }, warnings))
}

fn rate_limit(r: RateLimitSpec) -> Result<Option<(Duration, u32)>, String> {
    let interval = match r.interval.as_deref().map(str::trim) {
        None | Some("0") | Some("") => return Ok(None),
        Some(text) => humantime::parse_duration(text)
            .map_err(|e| format!("rate_limit.interval: '{text}' is not a duration (e.g. 1s, 500ms): {e}"))?,
    };
    if interval.is_zero() {
        return Ok(None);
    }
    Ok(Some((interval, r.burst.unwrap_or(0))))
}

fn file(dir: &Path, name: &str) -> PathBuf {
    let p = Path::new(name);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

fn pem(inline: Option<String>, path: Option<String>, dir: &Path, key: &str) -> Result<Option<Pem>, String> {
    match (inline.filter(|s| !s.is_empty()), path.filter(|s| !s.is_empty())) {
        (Some(_), Some(_)) => Err(format!("tls_server_config: give {key} or {key}_file, not both")),
        (Some(text), None) => Ok(Some(Pem::Inline(text))),
        (None, Some(p)) => Ok(Some(Pem::File(file(dir, &p)))),
        (None, None) => Ok(None),
    }
}

fn version(text: &str, key: &str) -> Result<u8, String> {
    match text {
        "TLS12" => Ok(12),
        "TLS13" => Ok(13),
        "TLS10" | "TLS11" => Err(format!(
            "tls_server_config.{key}: {text} cannot be honoured: rustls implements TLS 1.2 and 1.3 only; use TLS12 or TLS13"
        )),
        other => Err(format!("tls_server_config.{key}: unknown TLS version '{other}' (TLS12 or TLS13)")),
    }
}

fn tls_settings(t: TlsSpec, dir: &Path, warnings: &mut Vec<String>) -> Result<Option<TlsSettings>, String> {
    let cert = pem(t.cert, t.cert_file, dir, "cert")?;
    let key = pem(t.key, t.key_file, dir, "key")?;
    let client_ca = pem(t.client_ca, t.client_ca_file, dir, "client_ca")?;
    let auth_type = t.client_auth_type.unwrap_or_default();
    if cert.is_none() && key.is_none() && client_ca.is_none() && auth_type.is_empty() {
        // As exporter-toolkit: an empty tls_server_config means plain HTTP.
        return Ok(None);
    }
    let cert = cert.ok_or("tls_server_config: missing one of cert or cert_file")?;
    let key = key.ok_or("tls_server_config: missing one of key or key_file")?;
    let client_auth = match auth_type.as_str() {
        "" | "NoClientCert" => ClientAuth::None,
        "RequestClientCert" => {
            warnings.push("tls_server_config.client_auth_type: RequestClientCert changes nothing here (certificates asked for but never checked are not used); serving as NoClientCert".into());
            ClientAuth::None
        }
        "VerifyClientCertIfGiven" => ClientAuth::VerifyIfGiven,
        "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerify,
        "RequireAnyClientCert" | "RequireClientCert" => return Err(format!(
            "tls_server_config.client_auth_type: {auth_type} cannot be honoured: it accepts any certificate without verifying it; use RequireAndVerifyClientCert with client_ca_file"
        )),
        other => return Err(format!("tls_server_config.client_auth_type: unknown value '{other}' (NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert)")),
    };
    match (&client_ca, client_auth) {
        (Some(_), ClientAuth::None) if auth_type != "RequestClientCert" => {
            return Err("tls_server_config: client CA's have been configured without a client_auth_type".into())
        }
        (None, ClientAuth::VerifyIfGiven | ClientAuth::RequireAndVerify) => {
            return Err(format!("tls_server_config.client_auth_type: {auth_type} needs client_ca_file (or client_ca)"))
        }
        _ => {}
    }
    if t.client_allowed_sans.is_some_and(|s| !s.is_empty()) {
        return Err("tls_server_config.client_allowed_sans cannot be honoured yet: this exporter does not match client certificate SANs; use a client CA that signs only allowed clients".into());
    }
    let min = version(t.min_version.as_deref().unwrap_or("TLS12"), "min_version")?;
    let max = version(t.max_version.as_deref().unwrap_or("TLS13"), "max_version")?;
    if min > max {
        return Err("tls_server_config: min_version is above max_version".into());
    }
    let mut tls12_suites = Vec::new();
    for name in t.cipher_suites.unwrap_or_default() {
        if TLS12_SUITES.contains(&name.as_str()) {
            tls12_suites.push(name);
        } else if TLS13_SUITES.contains(&name.as_str()) {
            warnings.push(format!("tls_server_config.cipher_suites: {name} changes nothing: TLS 1.3 suites are not configurable (as in Go)"));
        } else if name.contains("_CBC_") || name.contains("_RC4_") || name.starts_with("TLS_RSA_") {
            return Err(format!("tls_server_config.cipher_suites: {name} cannot be honoured: rustls implements only AEAD suites with ECDHE (no CBC, RC4 or RSA key exchange); use one of {TLS12_SUITES:?}"));
        } else {
            return Err(format!("tls_server_config.cipher_suites: unknown cipher '{name}'"));
        }
    }
    let mut kx_groups = Vec::new();
    for curve in t.curve_preferences.unwrap_or_default() {
        kx_groups.push(match curve.as_str() {
            "X25519" => "X25519",
            "CurveP256" => "secp256r1",
            "CurveP384" => "secp384r1",
            "CurveP521" => return Err("tls_server_config.curve_preferences: CurveP521 cannot be honoured: rustls with ring has no P-521; use X25519, CurveP256 or CurveP384".into()),
            other => return Err(format!("tls_server_config.curve_preferences: unknown curve '{other}'")),
        }.to_string());
    }
    Ok(Some(TlsSettings {
        cert,
        key,
        client_ca,
        client_auth,
        tls12: min <= 12,
        tls13: max >= 13,
        tls12_suites: (!tls12_suites.is_empty()).then_some(tls12_suites),
        kx_groups: (!kx_groups.is_empty()).then_some(kx_groups),
        prefer_server_order: t.prefer_server_cipher_suites.unwrap_or(true),
    }))
}
