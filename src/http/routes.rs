//! The routes: `/metrics`, `/-/healthy`, `/-/ready`, `/-/reload`, and the status page `/` with its
//! JSON `/api/v1/status` (see [`crate::http::status_page`]).
//!
//! Handlers only read what was published ([`crate::publish`]): they never touch a source and never
//! wait for an evaluation, so scrapes stay fast while a query hangs. A scrape serves bytes that
//! already exist ([`crate::http::exposition`]); responses carry a `Content-Length`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use warp::http::{header, HeaderValue, StatusCode};
use warp::Filter;

use crate::eval::exposition::Format;
use crate::http::exposition::{Encoding, Exposition};
use crate::http::negotiation::Negotiated;
use crate::http::web::Web;
use crate::publish::snapshot::SnapshotStore;
use crate::publish::status::StatusStore;

/// Reloads the rules; `Err` carries every diagnostic, a line each.
pub type ReloadFn = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// What the handlers need.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<SnapshotStore>,
    pub exposition: Arc<Exposition>,
    pub status: Arc<StatusStore>,
    /// Set when `--web.enable-lifecycle` allows `POST /-/reload`.
    pub reload: Option<ReloadFn>,
    pub telemetry_path: String,
    /// `--web.config.file` (TLS, basic auth, headers), when given.
    pub web: Option<Arc<Web>>,
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

fn exposition_response(chunks: Vec<Bytes>, format: Format, encoding: Encoding) -> warp::reply::Response {
    use warp::Reply;
    let len: usize = chunks.iter().map(Bytes::len).sum();
    let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::convert::Infallible>));
    let mut response = warp::reply::stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    // hyper sends a body of known length as is, rather than chunked.
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(header::VARY, HeaderValue::from_static("Accept, Accept-Encoding"));
    if encoding == Encoding::Gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

/// Every route, over `state`; anything else is a plain 404.
fn routes(
    state: AppState,
) -> impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone {
    let status = crate::http::status_page::routes(state.status.clone(), state.telemetry_path.clone());
    let state = Arc::new(state);
    let healthy = warp::path!("-" / "healthy")
        .and(warp::get().or(warp::head()).unify())
        .map(|| plain(StatusCode::OK, "Healthy\n".into()));
    metrics_route(state.clone())
        .or(healthy)
        .unify()
        .or(ready_route(state.clone()))
        .unify()
        .or(reload_route(state))
        .unify()
        .or(status)
        .unify()
        .recover(|_rej: warp::Rejection| async move {
            Ok::<_, std::convert::Infallible>(plain(StatusCode::NOT_FOUND, "Not found\n".into()))
        })
        .unify()
}

/// `GET <telemetry path>`: the published exposition in the format the client's `Accept` prefers
/// (see [`crate::http::negotiation`]), gzipped when the client accepts it.
fn metrics_route(
    state: Arc<AppState>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let wanted: Arc<[String]> = state.telemetry_path.split('/').filter(|s| !s.is_empty()).map(str::to_string).collect();
    warp::get()
        .and(warp::path::full())
        .and(warp::header::optional::<AcceptsGzip>("accept-encoding"))
        .and(warp::header::optional::<Negotiated>("accept"))
        .and(warp::any().map(move || state.exposition.clone()))
        .and_then(
            move |full: warp::path::FullPath,
                  accept: Option<AcceptsGzip>,
                  negotiated: Option<Negotiated>,
                  exposition: Arc<Exposition>| {
                // The telemetry path, ignoring empty segments (`/metrics/` is `/metrics`).
                let matches = full.as_str().split('/').filter(|s| !s.is_empty()).eq(wanted.iter().map(String::as_str));
                async move {
                    if !matches {
                        return Err(warp::reject::not_found());
                    }
                    let encoding = if accept.is_some_and(|a| a.0) { Encoding::Gzip } else { Encoding::Identity };
                    let format = negotiated.map_or(Format::Text, |n| n.0);
                    Ok(exposition_response(exposition.body(format, encoding).await, format, encoding))
                }
            },
        )
}

/// `/-/ready`: 200 once every rule has finished its first evaluation.
fn ready_route(
    state: Arc<AppState>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::path!("-" / "ready").and(warp::get().or(warp::head()).unify()).map(move || {
        if state.store.load().ready {
            plain(StatusCode::OK, "Ready\n".into())
        } else {
            plain(StatusCode::SERVICE_UNAVAILABLE, "Not ready: waiting for every rule's first evaluation\n".into())
        }
    })
}

/// `POST /-/reload` (with `--web.enable-lifecycle`): the one reload path, as SIGHUP takes it.
fn reload_route(
    state: Arc<AppState>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::path!("-" / "reload").and(warp::post().or(warp::put()).unify()).and_then(move || {
        let state = state.clone();
        async move {
            Ok::<_, warp::Rejection>(match &state.reload {
                None => plain(
                    StatusCode::FORBIDDEN,
                    "Lifecycle API is not enabled; start with --web.enable-lifecycle\n".into(),
                ),
                Some(reload) => match reload().await {
                    Ok(()) => plain(StatusCode::OK, "Rules reloaded\n".into()),
                    Err(diagnostics) => plain(
                        StatusCode::BAD_REQUEST,
                        format!("Rules not reloaded; the previous rules keep running:\n{diagnostics}\n"),
                    ),
                },
            })
        }
    })
}

fn plain(status: StatusCode, body: String) -> warp::reply::Response {
    use warp::Reply;
    warp::reply::with_status(body, status).into_response()
}

/// Parses a listen address the way Prometheus's exporters do: `:8000` means every interface.
///
/// ```
/// use sql_signal_exporter::http::parse_listen_address;
/// assert_eq!(parse_listen_address(":8000").unwrap().to_string(), "0.0.0.0:8000");
/// assert_eq!(parse_listen_address("127.0.0.1:9187").unwrap().port(), 9187);
/// assert!(parse_listen_address("8000").is_err());
/// ```
pub fn parse_listen_address(text: &str) -> Result<SocketAddr, String> {
    let full = if text.starts_with(':') { format!("0.0.0.0{text}") } else { text.to_string() };
    full.parse().map_err(|_| format!("'{text}' is not a listen address; write host:port, e.g. :8000 or 127.0.0.1:8000"))
}

/// Binds `addr` (port 0 picks a free one) and returns the bound address and the server future,
/// which finishes after `shutdown` completes and in-flight responses are done; under
/// `--web.config.file` (TLS, basic auth, headers) when the state has one.
pub async fn serve(
    addr: SocketAddr,
    state: AppState,
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
    let server = match state.web.clone() {
        None => Either::Left(warp::serve(routes(state)).incoming(listener).graceful(shutdown).run()),
        Some(web) => Either::Right(crate::http::web::listener::serve(listener, routes(state), web, shutdown)),
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

    fn exposition() -> Arc<Exposition> {
        let store = Arc::new(SnapshotStore::new());
        store.set_rules(vec!["r".into()]);
        store.update("r", crate::publish::snapshot::Rendered::same(b"# TYPE r_up gauge\nr_up 1\n".to_vec()));
        Arc::new(Exposition::new(store, Arc::new(crate::publish::self_metrics::SelfMetrics::new())))
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
        let exposition = exposition();
        let state = AppState {
            store: exposition.store(),
            exposition,
            status: Default::default(),
            reload: None,
            telemetry_path: "/metrics".into(),
            web: None,
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
