//! The HTTP edge: `/metrics`, `/-/healthy`, `/-/ready`, `/-/reload`, and the status page `/` with its
//! JSON `/api/v1/status` (see [`crate::serve::status_page`]).
//!
//! Handlers only read the current [`Snapshot`](crate::serve::snapshot::Snapshot): they never touch the
//! database and never wait for an evaluation, so scrapes stay fast while a query hangs.
//!
//! A scrape serves bytes that already exist: the snapshot's body (or its gzip, compressed once per
//! rule update) and the exporter's own metrics, rendered at most once per [`OWN_METRICS_MAX_AGE`]
//! and again whenever the snapshot or the reload status changed (so they always agree with the
//! rules' series served beside them). Responses carry a `Content-Length` and go out as a list of
//! shared buffers, never copied into one.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use warp::http::{header, HeaderValue, StatusCode};
use warp::Filter;

use crate::serve::self_metrics::SelfMetrics;
use crate::serve::snapshot::{Snapshot, SnapshotStore};

/// The content type of the text exposition format.
pub const EXPOSITION_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The longest the exporter's own metrics are reused while nothing they report changed except the
/// process's (CPU time, memory, open files). Rendering them reads several `/proc` files, which cost
/// more than serving a small body; Prometheus scrapes every 15 s or so and never notices.
pub const OWN_METRICS_MAX_AGE: Duration = Duration::from_secs(1);

/// Reloads the rules; `Err` carries every diagnostic, a line each.
pub type ReloadFn = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// What the handlers need.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<SnapshotStore>,
    pub metrics: Arc<SelfMetrics>,
    pub status: Arc<crate::serve::status::StatusStore>,
    /// Set when `--web.enable-lifecycle` allows `POST /-/reload`.
    pub reload: Option<ReloadFn>,
    pub telemetry_path: String,
}

/// What the exporter's own metrics were rendered for: a change of any part renders them anew.
#[derive(Debug, Clone, Copy, PartialEq)]
struct OwnKey {
    generation: u64,
    reload_successful: i64,
    reload_timestamp: u64,
}

/// The exporter's own metrics as rendered for one snapshot.
struct OwnMetrics {
    key: OwnKey,
    rendered_at: Instant,
    text: Bytes,
    /// The end of the gzip member for that snapshot (see [`crate::serve::snapshot::GzipBody::finish`]).
    gzip_tail: OnceLock<Bytes>,
}

/// Builds `/metrics` bodies from the current snapshot and a cache of the exporter's own metrics.
pub struct Exposition {
    store: Arc<SnapshotStore>,
    metrics: Arc<SelfMetrics>,
    own: ArcSwapOption<OwnMetrics>,
}

impl Exposition {
    pub fn new(store: Arc<SnapshotStore>, metrics: Arc<SelfMetrics>) -> Exposition {
        Exposition { store, metrics, own: ArcSwapOption::empty() }
    }

    fn own(&self, snapshot: &Snapshot) -> Arc<OwnMetrics> {
        let key = OwnKey {
            generation: snapshot.generation(),
            reload_successful: self.metrics.reload_successful.get(),
            reload_timestamp: self.metrics.reload_success_timestamp.get().to_bits(),
        };
        if let Some(own) = self.own.load_full() {
            if own.key == key && own.rendered_at.elapsed() < OWN_METRICS_MAX_AGE {
                return own;
            }
        }
        // Scrapes racing past the expiry may each render; the last one stored wins. No lock.
        let fresh = Arc::new(OwnMetrics {
            key,
            rendered_at: Instant::now(),
            text: Bytes::from(self.metrics.render()),
            gzip_tail: OnceLock::new(),
        });
        self.own.store(Some(fresh.clone()));
        fresh
    }

    /// Forgets the exporter's own metrics, so the next scrape renders them (after a reload).
    pub fn invalidate(&self) {
        self.own.store(None);
    }

    /// The body of a scrape as buffers to send in order, gzipped when `gzip`: the rules' snapshot,
    /// then the exporter's own metrics.
    pub async fn body(&self, gzip: bool) -> Vec<Bytes> {
        let snapshot = self.store.load();
        let own = self.own(&snapshot);
        if !gzip {
            return vec![snapshot.body.clone(), own.text.clone()];
        }
        let gz = snapshot.gzip().await;
        let tail = own.gzip_tail.get_or_init(|| gz.finish(&own.text)).clone();
        let mut chunks = Vec::with_capacity(gz.chunks.len() + 1);
        chunks.extend(gz.chunks.iter().cloned());
        chunks.push(tail);
        chunks
    }
}

/// Whether an `Accept-Encoding` value accepts gzip (`gzip` or `x-gzip` with a non-zero `q`).
fn accepts_gzip(accept_encoding: &str) -> bool {
    accept_encoding.split(',').any(|item| {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        if !(coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip")) {
            return false;
        }
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        q > 0.0
    })
}

/// `Accept-Encoding` read straight into "does it accept gzip", without copying the header.
struct AcceptsGzip(bool);

impl std::str::FromStr for AcceptsGzip {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(AcceptsGzip(accepts_gzip(s)))
    }
}

fn exposition_response(chunks: Vec<Bytes>, gzip: bool) -> warp::reply::Response {
    use warp::Reply;
    let len: usize = chunks.iter().map(Bytes::len).sum();
    let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::convert::Infallible>));
    let mut response = warp::reply::stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(EXPOSITION_CONTENT_TYPE));
    // hyper sends a body of known length as is, rather than chunked.
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

fn routes(
    state: AppState,
) -> impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone {
    let wanted: Arc<[String]> = state.telemetry_path.split('/').filter(|s| !s.is_empty()).map(str::to_string).collect();
    let exposition = Arc::new(Exposition::new(state.store.clone(), state.metrics.clone()));
    let status = crate::serve::status_page::routes(state.status.clone(), state.telemetry_path.clone());
    let state = Arc::new(state);
    let with_state = warp::any().map(move || state.clone());
    let with_exposition = {
        let exposition = exposition.clone();
        warp::any().map(move || exposition.clone())
    };

    let metrics = warp::get()
        .and(warp::path::full())
        .and(warp::header::optional::<AcceptsGzip>("accept-encoding"))
        .and(with_exposition.clone())
        .and_then(move |full: warp::path::FullPath, accept: Option<AcceptsGzip>, exposition: Arc<Exposition>| {
            // The telemetry path, ignoring empty segments (`/metrics/` is `/metrics`).
            let matches = full.as_str().split('/').filter(|s| !s.is_empty()).eq(wanted.iter().map(String::as_str));
            async move {
                if !matches {
                    return Err(warp::reject::not_found());
                }
                let gzip = accept.is_some_and(|a| a.0);
                Ok(exposition_response(exposition.body(gzip).await, gzip))
            }
        });

    let healthy = warp::path!("-" / "healthy")
        .and(warp::get().or(warp::head()).unify())
        .map(|| plain(StatusCode::OK, "Healthy\n".into()));

    let ready = warp::path!("-" / "ready").and(warp::get().or(warp::head()).unify()).and(with_state.clone()).map(
        |state: Arc<AppState>| {
            if state.store.load().ready {
                plain(StatusCode::OK, "Ready\n".into())
            } else {
                plain(StatusCode::SERVICE_UNAVAILABLE, "Not ready: waiting for every rule's first evaluation\n".into())
            }
        },
    );

    let reload = warp::path!("-" / "reload")
        .and(warp::post().or(warp::put()).unify())
        .and(with_state.clone())
        .and(with_exposition)
        .and_then(|state: Arc<AppState>, exposition: Arc<Exposition>| async move {
            Ok::<_, warp::Rejection>(match &state.reload {
                None => plain(
                    StatusCode::FORBIDDEN,
                    "Lifecycle API is not enabled; start with --web.enable-lifecycle\n".into(),
                ),
                Some(reload) => {
                    let result = reload().await;
                    exposition.invalidate();
                    match result {
                        Ok(()) => plain(StatusCode::OK, "Rules reloaded\n".into()),
                        Err(diagnostics) => plain(
                            StatusCode::BAD_REQUEST,
                            format!("Rules not reloaded; the previous rules keep running:\n{diagnostics}\n"),
                        ),
                    }
                }
            })
        });

    metrics
        .or(healthy)
        .unify()
        .or(ready)
        .unify()
        .or(reload)
        .unify()
        .or(status)
        .unify()
        .recover(|_rej: warp::Rejection| async move {
            Ok::<_, std::convert::Infallible>(plain(StatusCode::NOT_FOUND, "Not found\n".into()))
        })
        .unify()
}

fn plain(status: StatusCode, body: String) -> warp::reply::Response {
    use warp::Reply;
    warp::reply::with_status(body, status).into_response()
}

/// Parses a listen address the way Prometheus's exporters do: `:8000` means every interface.
///
/// ```
/// use sql_signal_exporter::serve::http::parse_listen_address;
/// assert_eq!(parse_listen_address(":8000").unwrap().to_string(), "0.0.0.0:8000");
/// assert_eq!(parse_listen_address("127.0.0.1:9187").unwrap().port(), 9187);
/// assert!(parse_listen_address("8000").is_err());
/// ```
pub fn parse_listen_address(text: &str) -> Result<SocketAddr, String> {
    let full = if text.starts_with(':') { format!("0.0.0.0{text}") } else { text.to_string() };
    full.parse().map_err(|_| format!("'{text}' is not a listen address; write host:port, e.g. :8000 or 127.0.0.1:8000"))
}

/// Binds `addr` (port 0 picks a free one) and returns the bound address and the server future,
/// which finishes after `shutdown` completes and in-flight responses are done.
pub async fn serve(
    addr: SocketAddr,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, impl Future<Output = ()>)> {
    serve_with(addr, state, None, shutdown).await
}

/// [`serve`], under a `--web.config.file` (TLS, basic auth, headers) when `web` is given.
pub async fn serve_with(
    addr: SocketAddr,
    state: AppState,
    web: Option<Arc<crate::serve::web::Web>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, impl Future<Output = ()>)> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    // A response goes out as several buffers; with Nagle's algorithm on, its last partial segment
    // can wait for the client's delayed ACK (40 ms on Linux). Accepted sockets inherit the option.
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(1024)?;
    let bound = listener.local_addr()?;
    use futures_util::future::Either;
    let server = match web {
        None => Either::Left(warp::serve(routes(state)).incoming(listener).graceful(shutdown).run()),
        Some(web) => Either::Right(crate::serve::web::listener::serve(listener, routes(state), web, shutdown)),
    };
    Ok((bound, server))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_parse_like_prometheus() {
        assert_eq!(parse_listen_address(":8000").unwrap().to_string(), "0.0.0.0:8000");
        assert_eq!(parse_listen_address("127.0.0.1:9").unwrap().to_string(), "127.0.0.1:9");
        assert_eq!(parse_listen_address("[::1]:9").unwrap().to_string(), "[::1]:9");
        assert!(parse_listen_address("8000").is_err());
    }

    #[test]
    fn accept_encoding_gzip() {
        assert!(accepts_gzip("gzip"));
        assert!(accepts_gzip("deflate, GZIP;q=0.5"));
        assert!(accepts_gzip("br, x-gzip"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("identity, deflate"));
        assert!(!accepts_gzip(""));
    }

    fn exposition() -> Exposition {
        let store = Arc::new(SnapshotStore::new());
        store.set_rules(vec!["r".into()]);
        store.update("r", b"# TYPE r_up gauge\nr_up 1\n".to_vec());
        let metrics = Arc::new(SelfMetrics::new());
        metrics.reload_successful.set(1);
        Exposition::new(store, metrics)
    }

    #[tokio::test]
    async fn own_metrics_follow_the_snapshot_and_the_reload_status() {
        let ex = exposition();
        let first = ex.own(&ex.store.load());
        assert!(Arc::ptr_eq(&first, &ex.own(&ex.store.load())), "reused within the max age");
        ex.store.update("r", b"r_up 0\n".to_vec());
        let second = ex.own(&ex.store.load());
        assert!(!Arc::ptr_eq(&first, &second), "rendered anew for a new snapshot");
        ex.metrics.reload_successful.set(0);
        let third = ex.own(&ex.store.load());
        assert!(!Arc::ptr_eq(&second, &third), "rendered anew when a reload failed");
        assert!(std::str::from_utf8(&third.text)
            .unwrap()
            .contains("sql_signal_exporter_config_last_reload_successful 0"));
        ex.invalidate();
        assert!(!Arc::ptr_eq(&third, &ex.own(&ex.store.load())));
    }

    #[tokio::test]
    async fn plain_and_gzip_bodies_carry_the_same_text() {
        use std::io::Read;
        let ex = exposition();
        let plain: Vec<u8> = ex.body(false).await.concat();
        let gz: Vec<u8> = ex.body(true).await.concat();
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut unzipped).unwrap();
        assert_eq!(unzipped, plain);
        let text = String::from_utf8(plain).unwrap();
        assert!(text.starts_with("# TYPE r_up gauge\nr_up 1\n"));
        assert!(text.contains("sql_signal_exporter_build_info{"));
    }

    /// One request over a fresh connection; the raw response head and body.
    async fn request(addr: SocketAddr, path: &str, extra: &str) -> (String, Vec<u8>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n").as_bytes())
            .await
            .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        (String::from_utf8(raw[..split].to_vec()).unwrap().to_ascii_lowercase(), raw[split + 4..].to_vec())
    }

    #[tokio::test]
    async fn responses_have_a_length_and_say_their_encoding() {
        let state = AppState {
            store: exposition().store,
            metrics: Arc::new(SelfMetrics::new()),
            status: Default::default(),
            reload: None,
            telemetry_path: "/metrics".into(),
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr, server) = serve("127.0.0.1:0".parse().unwrap(), state, async move {
            let _ = stop_rx.await;
        })
        .await
        .unwrap();
        let server = tokio::spawn(server);

        let (head, body) = request(addr, "/metrics", "").await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains(&format!("content-length: {}\r\n", body.len())), "{head}");
        assert!(!head.contains("transfer-encoding") && !head.contains("content-encoding"), "{head}");
        assert!(body.starts_with(b"# TYPE r_up gauge\nr_up 1\n"));

        let (head, gz) = request(addr, "/metrics/", "Accept-Encoding: gzip\r\n").await;
        assert!(
            head.contains("content-encoding: gzip") && head.contains(&format!("content-length: {}\r\n", gz.len())),
            "{head}"
        );
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);

        assert!(request(addr, "/metricsx", "").await.0.starts_with("http/1.1 404"));
        assert!(request(addr, "/other/metrics", "").await.0.starts_with("http/1.1 404"));
        let _ = stop_tx.send(());
        server.await.unwrap();
    }
}
