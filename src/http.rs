//! The HTTP edge: `/metrics`, `/-/healthy`, `/-/ready`, `/-/reload` and a landing page.
//!
//! Handlers only read the current [`Snapshot`](crate::snapshot::Snapshot): they never touch the
//! database and never wait for an evaluation, so scrapes stay fast while a query hangs.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use warp::http::{header, StatusCode};
use warp::Filter;

use crate::self_metrics::SelfMetrics;
use crate::snapshot::SnapshotStore;

/// The content type of the text exposition format.
pub const EXPOSITION_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Reloads the rules; `Err` carries every diagnostic, a line each.
pub type ReloadFn = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// What the handlers need.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<SnapshotStore>,
    pub metrics: Arc<SelfMetrics>,
    /// Set when `--web.enable-lifecycle` allows `POST /-/reload`.
    pub reload: Option<ReloadFn>,
    pub telemetry_path: String,
}

/// The full body of a scrape: the rules' snapshot, then the exporter's own metrics.
pub fn metrics_body(state: &AppState) -> (Bytes, Bytes) {
    (state.store.load().body.clone(), Bytes::from(state.metrics.render()))
}

fn routes(state: AppState) -> impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone {
    let path_segments: Vec<String> = state
        .telemetry_path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let with_state = warp::any().map(move || state.clone());

    let metrics = warp::get()
        .and(warp::path::full())
        .and(with_state.clone())
        .and_then(move |full: warp::path::FullPath, state: AppState| {
            let wanted = path_segments.clone();
            async move {
                let got: Vec<&str> = full.as_str().trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
                if got != wanted {
                    return Err(warp::reject::not_found());
                }
                let (rules, own) = metrics_body(&state);
                let chunks = [Ok::<_, std::convert::Infallible>(rules), Ok(own)];
                let reply = warp::reply::stream(futures_util::stream::iter(chunks));
                Ok(warp::reply::with_header(reply, header::CONTENT_TYPE, EXPOSITION_CONTENT_TYPE).into_response())
            }
        });

    let healthy = warp::path!("-" / "healthy").and(warp::get().or(warp::head()).unify()).map(|| plain(StatusCode::OK, "Healthy\n".into()));

    let ready = warp::path!("-" / "ready").and(warp::get().or(warp::head()).unify()).and(with_state.clone()).map(|state: AppState| {
        if state.store.load().ready {
            plain(StatusCode::OK, "Ready\n".into())
        } else {
            plain(StatusCode::SERVICE_UNAVAILABLE, "Not ready: waiting for every rule's first evaluation\n".into())
        }
    });

    let reload = warp::path!("-" / "reload").and(warp::post().or(warp::put()).unify()).and(with_state.clone()).and_then(|state: AppState| async move {
        Ok::<_, warp::Rejection>(match &state.reload {
            None => plain(StatusCode::FORBIDDEN, "Lifecycle API is not enabled; start with --web.enable-lifecycle\n".into()),
            Some(reload) => match reload().await {
                Ok(()) => plain(StatusCode::OK, "Rules reloaded\n".into()),
                Err(diagnostics) => plain(StatusCode::BAD_REQUEST, format!("Rules not reloaded; the previous rules keep running:\n{diagnostics}\n")),
            },
        })
    });

    let landing = warp::path::end().and(warp::get()).and(with_state).map(|state: AppState| {
        let body = format!(
            "<!doctype html><html><head><title>sql-signal-exporter</title></head><body><h1>sql-signal-exporter {}</h1><p><a href=\"{}\">Metrics</a></p></body></html>\n",
            crate::VERSION, state.telemetry_path
        );
        warp::reply::html(body).into_response()
    });

    use warp::Reply;
    metrics
        .or(healthy)
        .unify()
        .or(ready)
        .unify()
        .or(reload)
        .unify()
        .or(landing)
        .unify()
        .recover(|_rej: warp::Rejection| async move { Ok::<_, std::convert::Infallible>(plain(StatusCode::NOT_FOUND, "Not found\n".into())) })
        .unify()
}

fn plain(status: StatusCode, body: String) -> warp::reply::Response {
    use warp::Reply;
    warp::reply::with_status(body, status).into_response()
}

/// Parses a listen address the way Prometheus's exporters do: `:8000` means every interface.
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
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let server = warp::serve(routes(state)).incoming(listener).graceful(shutdown).run();
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
}
