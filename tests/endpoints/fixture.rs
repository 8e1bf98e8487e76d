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
    let path = target.split('?').next().unwrap_or("/");
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
    std::thread::sleep(route.delay);
    let mut out = format!(
        "HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        route.status,
        route.content_type,
        route.body.len()
    );
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
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "endpoint test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()))
        .unwrap();
    (ca_cert.pem(), Arc::new(config))
}
