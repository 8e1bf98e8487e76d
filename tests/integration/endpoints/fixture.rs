//! A small HTTP/1.1 server on loopback for the endpoint tests: fixed responses per path, optional
//! basic auth, delays, TLS (rustls with a test CA made by rcgen). One thread per connection,
//! `Connection: close`; enough for an exporter that makes a handful of requests.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone)]
pub struct Route {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub delay: Duration,
    /// Expected `user:password`; anything else gets a 401.
    pub basic: Option<String>,
    pub location: Option<String>,
    pub gzip: bool,
}

impl Route {
    pub fn json(body: impl Into<Vec<u8>>) -> Route {
        Route {
            status: 200,
            content_type: "application/json",
            body: body.into(),
            delay: Duration::ZERO,
            basic: None,
            location: None,
            gzip: false,
        }
    }
}

type Routes = Arc<Mutex<HashMap<String, Route>>>;
/// Each request seen: its target (path and query) and its Authorization header.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

pub struct Fixture {
    pub addr: SocketAddr,
    routes: Routes,
    pub seen: Seen,
    stop: Arc<AtomicBool>,
    tls: bool,
}

impl Fixture {
    pub fn start(tls: Option<Arc<rustls::ServerConfig>>) -> Fixture {
        Fixture::start_on("127.0.0.1:0".parse().unwrap(), tls)
    }

    pub fn start_on(addr: SocketAddr, tls: Option<Arc<rustls::ServerConfig>>) -> Fixture {
        let listener = TcpListener::bind(addr).expect("bind the fixture server");
        let addr = listener.local_addr().unwrap();
        let routes: Routes = Arc::default();
        let seen: Seen = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s, st, is_tls) = (routes.clone(), seen.clone(), stop.clone(), tls.is_some());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (r, s, tls) = (r.clone(), s.clone(), tls.clone());
                std::thread::spawn(move || match tls {
                    None => serve(conn, &r, &s),
                    Some(cfg) => {
                        let Ok(server) = rustls::ServerConnection::new(cfg) else { return };
                        serve(rustls::StreamOwned::new(server, conn), &r, &s)
                    }
                });
            }
        });
        Fixture { addr, routes, seen, stop, tls: is_tls }
    }

    pub fn set(&self, path: &str, route: Route) {
        self.routes.lock().unwrap().insert(path.to_string(), route);
    }

    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(mut conn: impl Read + Write, routes: &Routes, seen: &Mutex<Vec<(String, Option<String>)>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let auth = head.lines().find_map(|l| {
        l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("authorization")).map(|(_, v)| v.trim().to_string())
    });
    seen.lock().unwrap().push((target.clone(), auth.clone()));
    // A request through a proxy names the whole URL (absolute form): route by its path.
    let relative = match target.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target.as_str(),
    };
    let path = relative.split('?').next().unwrap_or("/");
    let route = routes.lock().unwrap().get(path).cloned();
    let route = match route {
        None => Route { status: 404, content_type: "text/plain", ..Route::json("not found") },
        Some(r) if r.basic.as_ref().is_some_and(|b| auth.as_deref() != Some(&format!("Basic {}", base64(b)))) => {
            Route {
                status: 401,
                content_type: "application/json",
                ..Route::json(r#"{"errors":[{"code":"NOT_AUTHENTICATED"}]}"#)
            }
        }
        Some(r) => r,
    };
    // Not synchronisation: a slow endpoint is what a route with a delay is for.
    std::thread::sleep(route.delay);
    let mut route = route;
    if route.gzip {
        use std::io::Write as _;
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&route.body).unwrap();
        route.body = z.finish().unwrap();
    }
    let mut out = format!(
        "HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        route.status,
        route.content_type,
        route.body.len()
    );
    if route.gzip {
        out.push_str("Content-Encoding: gzip\r\n");
    }
    if let Some(l) = &route.location {
        out.push_str(&format!("Location: {l}\r\n"));
    }
    out.push_str("\r\n");
    let _ = conn.write_all(out.as_bytes());
    let _ = conn.write_all(&route.body);
    let _ = conn.flush();
}

pub fn base64(s: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A test CA and a server certificate it signed for `localhost` and 127.0.0.1: (CA PEM, config).
pub fn tls_server() -> (String, Arc<rustls::ServerConfig>) {
    let pki = Pki::new(&["localhost", "127.0.0.1"]);
    let config = pki.server_config(false);
    (pki.ca_pem, config)
}

/// A test CA, a server certificate for `names` and a client certificate, all PEM.
pub struct Pki {
    pub ca_pem: String,
    server: (rustls::pki_types::CertificateDer<'static>, Vec<u8>),
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

impl Pki {
    pub fn new(names: &[&str]) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "endpoint test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names).unwrap().signed_by(&key, &issuer).unwrap();
        let client_key = KeyPair::generate().unwrap();
        let client =
            CertificateParams::new(vec!["exporter".to_string()]).unwrap().signed_by(&client_key, &issuer).unwrap();
        Pki {
            ca_pem: ca_cert.pem(),
            server: (cert.der().clone(), key.serialize_der()),
            client_cert_pem: client.pem(),
            client_key_pem: client_key.serialize_pem(),
        }
    }

    /// The server's config; with `client_auth`, it requires a client certificate from the CA.
    pub fn server_config(&self, client_auth: bool) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if client_auth {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(rustls::pki_types::CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap()).unwrap();
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(self.server.1.clone().into());
        Arc::new(builder.with_single_cert(vec![self.server.0.clone()], key).unwrap())
    }
}
