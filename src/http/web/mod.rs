//! `--web.config.file`: TLS, basic auth, extra headers and a rate limit for every endpoint, in the
//! file format of Prometheus's exporter-toolkit, so the file an operator already has for
//! node_exporter or postgres_exporter works here.
//!
//! - [`config`]: parse and validate the file (everything that can be refused is refused there).
//! - [`tls`]: the rustls server config, rebuilt when certificate files change on disk.
//! - [`auth`]: basic auth with bcrypt off the runtime threads and a cache of successes.
//! - [`listener`]: the accept loop. warp 0.4 has no TLS of its own, so the routes are served as a
//!   service through hyper over tokio-rustls.
//!
//! Certificates are re-checked for every new connection; the rest of the file is re-read on reload
//! (SIGHUP, `POST /-/reload`). An invalid file on reload keeps the one in force.

pub mod auth;
pub mod config;
pub mod listener;
pub mod tls;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use warp::http::{HeaderName, HeaderValue};

/// The parts of the file re-read on reload.
pub struct Active {
    pub users: auth::Users,
    pub open_paths: Vec<String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub limiter: Option<RateLimiter>,
}

impl Active {
    /// Whether `path` is served without basic auth: the probes always (kubelet sends no password).
    pub fn is_open(&self, path: &str) -> bool {
        matches!(path, "/-/healthy" | "/-/ready") || self.open_paths.iter().any(|p| p == path)
    }
}

/// A token bucket: one request per `interval`, bursts of `burst` (golang.org/x/time/rate semantics).
pub struct RateLimiter {
    interval: Duration,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    fn new(interval: Duration, burst: u32) -> RateLimiter {
        RateLimiter { interval, burst: f64::from(burst), state: Mutex::new((f64::from(burst), Instant::now())) }
    }

    pub fn allow(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(state.1).as_secs_f64() / self.interval.as_secs_f64();
        state.0 = (state.0 + refill).min(self.burst);
        state.1 = now;
        if state.0 >= 1.0 {
            state.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The web config in force.
pub struct Web {
    path: PathBuf,
    pub active: ArcSwap<Active>,
    /// Whether TLS is on is fixed at start, as in exporter-toolkit.
    pub tls: Option<tls::Tls>,
    pub checker: auth::Checker,
}

impl std::fmt::Debug for Web {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Web").field("path", &self.path).field("tls", &self.tls.is_some()).finish()
    }
}

fn active(cfg: config::WebConfig) -> (Active, Option<config::TlsSettings>) {
    let limiter = cfg.rate_limit.map(|(interval, burst)| RateLimiter::new(interval, burst));
    let users = auth::Users::new(cfg.users);
    (Active { users, open_paths: cfg.open_paths, headers: cfg.headers, limiter }, cfg.tls)
}

impl Web {
    /// Reads, validates and loads `path` (certificates included), logging its warnings.
    pub fn load(path: &Path) -> Result<Web, String> {
        let (cfg, warnings) = config::load(path)?;
        for w in warnings {
            tracing::warn!(file = %path.display(), "{w}");
        }
        let (active, tls) = active(cfg);
        let tls = tls.map(tls::Tls::new).transpose().map_err(|e| format!("{}: {e}", path.display()))?;
        tracing::info!(file = %path.display(), tls = tls.is_some(), basic_auth = !active.users.is_empty(), "web config loaded");
        Ok(Web {
            path: path.to_path_buf(),
            active: ArcSwap::from_pointee(active),
            tls,
            checker: auth::Checker::default(),
        })
    }

    /// Re-reads the file; on any error the config in force stays and the error says why.
    pub fn reload(&self) -> Result<(), String> {
        let result = self.try_reload();
        match &result {
            Ok(()) => tracing::info!(file = %self.path.display(), "web config reloaded"),
            Err(e) => {
                tracing::error!(file = %self.path.display(), "web config not reloaded; the previous one stays in force: {e}")
            }
        }
        result.map_err(|e| format!("web config not reloaded; the previous one stays in force: {e}"))
    }

    fn try_reload(&self) -> Result<(), String> {
        let (cfg, warnings) = config::load(&self.path)?;
        for w in warnings {
            tracing::warn!(file = %self.path.display(), "{w}");
        }
        let (active, tls) = active(cfg);
        match (&self.tls, tls) {
            (Some(current), Some(settings)) => current.replace(settings)?,
            (None, None) => {}
            (Some(_), None) => return Err("tls_server_config was removed; switching TLS off needs a restart".into()),
            (None, Some(_)) => return Err("tls_server_config was added; switching TLS on needs a restart".into()),
        }
        self.active.store(Arc::new(active));
        Ok(())
    }

    /// [`Web::reload`] on a blocking thread (it reads files and computes a bcrypt hash).
    pub async fn reload_async(self: &Arc<Self>) -> Result<(), String> {
        let web = self.clone();
        tokio::task::spawn_blocking(move || web.reload())
            .await
            .unwrap_or_else(|e| Err(format!("internal error while reloading the web config, please report it: {e}")))
    }
}
