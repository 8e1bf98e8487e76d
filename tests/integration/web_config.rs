//! `--web.config.file` over real sockets: the exporter binary serving TLS (rustls) and basic auth,
//! a real TLS client (rustls, ring), certificates made by rcgen, files rotated on disk.
//!
//! The rules point at a closed port: the web side does not need a database.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::{repo_root, Exporter};
use base64::Engine;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

// ---- certificates ----------------------------------------------------------

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        Ca { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    fn leaf(&self, names: &[&str]) -> Leaf {
        let params = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }
}

// ---- the exporter ----------------------------------------------------------

fn start(web_config: &Path) -> Exporter {
    let rules = repo_root().join("rules/postgres.yaml");
    let web = web_config.to_str().expect("UTF-8 path");
    Exporter::start(
        &["--rules", rules.to_str().expect("UTF-8 path"), "--web.config.file", web, "--web.enable-lifecycle"],
        &[("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/postgres")],
    )
}

// ---- a TLS client ----------------------------------------------------------

struct Reply {
    status: u16,
    head: String,
    body: String,
    server_cert: Option<CertificateDer<'static>>,
}

struct Client {
    roots: Vec<CertificateDer<'static>>,
    identity: Option<(CertificateDer<'static>, Vec<u8>)>,
}

impl Client {
    fn trusting(ca: &Ca) -> Client {
        Client { roots: vec![ca.der()], identity: None }
    }

    fn with_identity(mut self, leaf: &Leaf) -> Client {
        self.identity = Some((leaf.der.clone(), leaf.key_der.clone()));
        self
    }

    fn config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for r in &self.roots {
            roots.add(r.clone()).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        Arc::new(match &self.identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder
                .with_client_auth_cert(vec![cert.clone()], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.clone())))
                .unwrap(),
        })
    }

    /// `GET path` over a new TLS connection; `Err` carries the TLS or I/O error.
    fn get(&self, addr: SocketAddr, path: &str, auth: Option<&str>) -> Result<Reply, String> {
        let mut conn = rustls::ClientConnection::new(self.config(), ServerName::try_from("localhost").unwrap())
            .map_err(|e| e.to_string())?;
        let mut tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        if let Some(userpass) = auth {
            let b64 = base64::engine::general_purpose::STANDARD.encode(userpass);
            request.push_str(&format!("Authorization: Basic {b64}\r\n"));
        }
        request.push_str("\r\n");
        tls.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        tls.read_to_end(&mut raw).map_err(|e| e.to_string())?;
        let server_cert = conn.peer_certificates().and_then(|c| c.first().cloned());
        let text = String::from_utf8_lossy(&raw).to_string();
        let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("no HTTP response: {text:?}"))?;
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or("no status")?;
        Ok(Reply { status, head: head.to_ascii_lowercase(), body: body.to_string(), server_cert })
    }
}

// ---- fixtures --------------------------------------------------------------

/// A bcrypt hash of `password`, at a low cost so debug builds stay quick.
fn hash(password: &str) -> String {
    bcrypt::hash(password, 6).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    // Replaced by rename, as a mounted secret or cert-manager does: never half-written.
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

fn install(dir: &Path, leaf: &Leaf) {
    write(dir, "server.crt", &leaf.cert_pem);
    write(dir, "server.key", &leaf.key_pem);
}

// ---- tests -----------------------------------------------------------------

#[test]
fn tls_and_basic_auth() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    install(dir.path(), &ca.leaf(&["localhost", "127.0.0.1"]));
    let config = format!(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
         http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n\
         basic_auth_users:\n  alice: {}\n",
        hash("wonderland")
    );
    let mut ex = start(&write(dir.path(), "web.yml", &config));
    ex.wait_listening();
    let client = Client::trusting(&ca);

    let ok = client.get(ex.addr, "/metrics", Some("alice:wonderland")).unwrap();
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.body.contains("postgresql_up"), "{}", ok.body);
    assert!(ok.head.contains("x-content-type-options: nosniff"), "{}", ok.head);

    for auth in [None, Some("alice:wrong"), Some("mallory:wonderland"), Some("alice")] {
        let r = client.get(ex.addr, "/metrics", auth).unwrap();
        assert_eq!(r.status, 401, "{auth:?}");
        assert!(r.head.contains("www-authenticate: basic"), "{}", r.head);
        assert!(!r.body.contains("postgresql_up"));
        assert!(r.head.contains("x-content-type-options: nosniff"), "headers on refusals too");
    }
    assert_eq!(client.get(ex.addr, "/", None).unwrap().status, 401, "every other endpoint needs auth");

    // The probes stay open, so kubelet's httpGet probes work.
    assert_eq!(client.get(ex.addr, "/-/healthy", None).unwrap().status, 200);
    assert_ne!(client.get(ex.addr, "/-/ready", None).unwrap().status, 401);

    // A client that does not trust the CA, and plain HTTP, get nothing.
    let stranger = Client::trusting(&Ca::new("other CA"));
    let err = stranger.get(ex.addr, "/-/healthy", None).err().expect("an unknown CA is refused");
    assert!(err.contains("UnknownIssuer") || err.contains("invalid peer certificate"), "{err}");
    let mut plain = TcpStream::connect(ex.addr).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    plain.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let _ = plain.read_to_end(&mut buf);
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    assert!(!ex.logs().contains("wonderland"));
}

#[test]
fn client_certificate_required() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    install(dir.path(), &ca.leaf(&["localhost"]));
    let client_ca = Ca::new("client CA");
    write(dir.path(), "clients.crt", &client_ca.issuer.pem());
    let config = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
                  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients.crt\n";
    let mut ex = start(&write(dir.path(), "web.yml", config));
    ex.wait_listening();

    let err = Client::trusting(&ca).get(ex.addr, "/-/healthy", None).err().expect("no client certificate: refused");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    let wrong = Client::trusting(&ca).with_identity(&Ca::new("rogue CA").leaf(&["client"]));
    assert!(wrong.get(ex.addr, "/-/healthy", None).is_err(), "a certificate from another CA is refused");

    let good = Client::trusting(&ca).with_identity(&client_ca.leaf(&["client"]));
    let r = good.get(ex.addr, "/metrics", None).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn rotated_certificates_and_reloaded_users() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let first = ca.leaf(&["localhost"]);
    install(dir.path(), &first);
    let web = |password: &str| {
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  alice: {}\n",
            hash(password)
        )
    };
    let config = write(dir.path(), "web.yml", &web("one"));
    let mut ex = start(&config);
    ex.wait_listening();
    let client = Client::trusting(&ca);
    let r = client.get(ex.addr, "/metrics", Some("alice:one")).unwrap();
    assert_eq!((r.status, r.server_cert.as_ref()), (200, Some(&first.der)));

    // Replaced on disk: the next connection gets the new certificate, no restart, no reload.
    let second = ca.leaf(&["localhost"]);
    install(dir.path(), &second);
    let r = client.get(ex.addr, "/metrics", Some("alice:one")).unwrap();
    assert_eq!((r.status, r.server_cert.as_ref()), (200, Some(&second.der)));

    // A broken rotation keeps the last good certificate and says why.
    write(dir.path(), "server.crt", "not a certificate\n");
    let r = client.get(ex.addr, "/-/healthy", None).unwrap();
    assert_eq!(r.server_cert.as_ref(), Some(&second.der));
    assert!(ex.logs().contains("keeping the previous ones"), "{}", ex.logs());
    install(dir.path(), &second);

    // The rest of the file follows a reload.
    write(dir.path(), "web.yml", &web("two"));
    ex.signal("HUP");
    ex.wait_until(Duration::from_secs(20), "the new password in force", |e| {
        client.get(e.addr, "/metrics", Some("alice:two")).unwrap().status == 200
    });
    assert_eq!(client.get(ex.addr, "/metrics", Some("alice:one")).unwrap().status, 401);

    // An invalid file on reload: the one in force stays, and the reason is given.
    write(
        dir.path(),
        "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS10\n",
    );
    ex.signal("HUP");
    ex.wait_until(Duration::from_secs(20), "the refused web config reload in the log", |e| {
        e.logs().contains("web config not reloaded")
    });
    assert!(ex.logs().contains("min_version"), "{}", ex.logs());
    assert_eq!(client.get(ex.addr, "/metrics", Some("alice:two")).unwrap().status, 200);
    assert_eq!(client.get(ex.addr, "/metrics", None).unwrap().status, 401, "auth still required");
}

/// The sample file of exporter-toolkit's documentation (docs/web-config.yml), same keys and layout,
/// and the full documented set of `tls_server_config` keys with values rustls can honour.
#[test]
fn exporter_toolkit_documentation_examples_work_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    install(dir.path(), &ca.leaf(&["localhost"]));
    let sample = format!(
        "# TLS and basic authentication configuration example.\n#\n\
         # Additionally, a certificate and a key file are needed.\n\
         tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\n\
         # Usernames and passwords required to connect.\n\
         basic_auth_users:\n  alice: {}\n  bob: {}\n\n\
         # Exclude /-/healthy and /-/ready from basic authentication\n\
         basic_auth_excluded_paths:\n- /-/healthy\n- /-/ready\n",
        hash("alice-password"),
        hash("bob-password")
    );
    let full = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: NoClientCert\n  \
                min_version: TLS12\n  max_version: TLS13\n  cipher_suites:\n    - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\n    \
                - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\n  prefer_server_cipher_suites: true\n  curve_preferences:\n    \
                - X25519\n    - CurveP256\nhttp_server_config:\n  http2: true\n  headers:\n    X-Frame-Options: deny\n    \
                Strict-Transport-Security: max-age=31536000\n";
    for (name, text, auth) in [("sample.yml", sample.as_str(), Some("bob:bob-password")), ("full.yml", full, None)] {
        let mut ex = start(&write(dir.path(), name, text));
        ex.wait_listening();
        let client = Client::trusting(&ca);
        let r = client.get(ex.addr, "/metrics", auth).unwrap();
        assert_eq!(r.status, 200, "{name}: {}\n{}", r.body, ex.logs());
        assert_eq!(client.get(ex.addr, "/-/healthy", None).unwrap().status, 200);
        if name == "full.yml" {
            assert!(r.head.contains("x-frame-options: deny"), "{}", r.head);
            assert!(ex.logs().contains("http2: changes nothing"), "a key that changes nothing is a warning");
        }
    }
}

/// What rustls cannot honour, and broken files, stop the start with exit 2 and the key named.
#[test]
fn invalid_files_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    install(dir.path(), &ca.leaf(&["localhost"]));
    let tls = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";
    let cases = [
        (format!("{tls}  min_version: TLS10\n"), "min_version: TLS10 cannot be honoured"),
        (
            format!("{tls}  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA]\n"),
            "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA cannot be honoured",
        ),
        (format!("{tls}  curve_preferences: [CurveP521]\n"), "CurveP521 cannot be honoured"),
        (format!("{tls}  client_auth_type: RequireAnyClientCert\n"), "RequireAnyClientCert cannot be honoured"),
        (format!("{tls}  client_allowed_sans: [a.example]\n"), "client_allowed_sans cannot be honoured"),
        (format!("{tls}  cert_fle: x\n"), "unknown field `cert_fle`"),
        ("tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n".to_string(), "missing.crt"),
        ("basic_auth_users:\n  alice: plaintext\n".to_string(), "user 'alice' is not a bcrypt hash"),
        ("http_server_config:\n  headers:\n    X-Powered-By: me\n".to_string(), "'X-Powered-By' can not be configured"),
    ];
    for (i, (text, wanted)) in cases.iter().enumerate() {
        let mut ex = start(&write(dir.path(), &format!("bad{i}.yml"), text));
        assert_eq!(ex.wait_exit(Duration::from_secs(20)), Some(2), "{text}\n{}", ex.logs());
        let logs = ex.logs();
        assert!(logs.contains("--web.config.file") && logs.contains(wanted), "wanted {wanted:?} in:\n{logs}");
        assert!(!logs.contains("plaintext"), "a password is never quoted back");
    }
}
