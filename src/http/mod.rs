//! The HTTP side: everything a client can ask, answered from what was published, never from a
//! source or the scheduler.
//!
//! - [`routes`]: `/metrics`, `/-/healthy`, `/-/ready`, `/-/reload`, and the server itself.
//! - [`negotiation`]: the format a scrape asks for in `Accept` (OpenMetrics or the text format).
//! - [`exposition`]: a scrape's body: the snapshot's bytes and the exporter's own metrics, gzipped
//!   once.
//! - [`status_page`]: `/` and `/api/v1/status`, from the status records.
//! - [`web`]: `--web.config.file` (TLS, basic auth, headers) around the routes.
//!
//! Depends on `publish` and `rules` only; the architecture test holds it to that.

pub mod exposition;
pub mod negotiation;
pub mod routes;
pub mod status_page;
pub mod web;

pub use routes::{parse_listen_address, serve, AppState, ReloadFn};
