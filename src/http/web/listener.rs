//! The accept loop used when `--web.config.file` is given: TCP, then TLS when configured, then
//! HTTP/1.1 through hyper, with rate limit, basic auth and extra headers around the warp routes.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower_service::Service;
use warp::http::{header, HeaderValue, Request, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::http::web::Web;

/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn refusal(status: StatusCode, body: &'static str) -> Response {
    warp::reply::with_status(body, status).into_response()
}

/// Rate limit, then basic auth, then the routes; the configured headers on every response.
async fn handle<S>(web: Arc<Web>, mut routes: S, req: Request<Incoming>) -> Result<Response, Infallible>
where
    S: Service<Request<Incoming>, Response = Response, Error = Infallible>,
{
    let active = web.active.load_full();
    let mut response = if active.limiter.as_ref().is_some_and(|l| !l.allow()) {
        refusal(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n")
    } else if !active.users.is_empty()
        && !active.is_open(req.uri().path())
        && !web.checker.check(&active.users, req.headers().get(header::AUTHORIZATION)).await
    {
        let mut r = refusal(StatusCode::UNAUTHORIZED, "Unauthorized\n");
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
        r
    } else {
        routes.call(req).await?
    };
    for (name, value) in &active.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    Ok(response)
}

/// Serves `routes` on `listener` under `web` until `shutdown`, then lets in-flight responses finish.
pub fn serve<F>(
    listener: TcpListener,
    routes: F,
    web: Arc<Web>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = ()> + Send
where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
    F::Future: Send,
{
    let service = warp::service(routes);
    async move {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let (tcp, _peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        tracing::warn!("cannot accept a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            let web = web.clone();
            let service = service.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let svc = {
                    let web = web.clone();
                    hyper::service::service_fn(move |req| handle(web.clone(), service.clone(), req))
                };
                let http = hyper::server::conn::http1::Builder::new();
                match &web.tls {
                    None => {
                        let _ = watcher.watch(http.serve_connection(TokioIo::new(tcp), svc)).await;
                    }
                    Some(tls) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
                        let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => {
                                tracing::debug!("TLS handshake failed: {e}");
                                return;
                            }
                            Err(_) => return,
                        };
                        let _ = watcher.watch(http.serve_connection(TokioIo::new(stream), svc)).await;
                    }
                }
            });
        }
        drop(listener);
        graceful.shutdown().await;
    }
}
