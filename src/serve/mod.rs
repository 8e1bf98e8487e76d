//! Serving: the scheduler that runs each rule on its interval, the glue of one evaluation, the
//! snapshot `/metrics` serves, the HTTP server, the exporter's own metrics, and the wiring of it all.
//!
//! - [`scheduler`]: one task per rule; applies a new rule set on reload.
//! - [`evaluate`] (and `endpoint` for rules on HTTP endpoints): one run of one rule: fetch from its sources, evaluate, never fail to return
//!   families to serve.
//! - [`snapshot`]: the rendered bytes `/metrics` serves, replaced per rule after each evaluation.
//! - [`http`]: the routes. They read the snapshot only and never wait on a source.
//! - [`status`], [`status_page`]: each rule's last evaluations and each target's state and why, for
//!   `/` and `/api/v1/status`; fed by the scheduler, never by a query of their own.
//! - [`signal_sink`]: a signal's rows folded as they stream in, only what its windows can use.
//! - [`self_metrics`]: the exporter's own metrics, `sql_signal_exporter_*`.
//! - [`app`]: start, reload, `--once`, shutdown; [`auto_reload`]: reload when the files change.
//! - [`web`]: `--web.config.file` (TLS, basic auth) around the routes.
//!
//! May depend on every other module: this is the top of the data path.

pub mod app;
pub mod auto_reload;
mod endpoint;
pub mod evaluate;
pub mod http;
pub mod scheduler;
pub mod self_metrics;
pub mod signal_sink;
pub mod snapshot;
pub mod status;
pub mod status_page;
pub mod watchdog;
pub mod web;
