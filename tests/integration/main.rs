//! The integration tests, one crate and one harness: the exporter binary and library against real
//! PostgreSQL servers over real sockets. See [`harness`] for how servers are shared and how golden
//! files are rewritten.
//!
//! - [`kanary`]: `rules/kanary.yaml` reproduces the Go exporter (golden files), fail-safe and cost;
//! - [`metric_rules`]: metric rules on a real server, and `rules/postgres.yaml`;
//! - [`faults`]: faults, reload, secrets, shutdown and logs of the running binary;
//! - [`check_rules`]: `--check-rules` with the corpus in `tests/check_rules/`;
//! - [`explain`]: `--check-rules --db --explain`: costly plans warn, nothing runs;
//! - [`deploy_role`]: `examples/postgres/role.sql` is enough for the shipped rules, and no more;
//! - [`prometheus`]: a real Prometheus scrapes us and evaluates the shipped alerts and dashboard;
//! - [`schedule`]: rules sharing an interval run at their own offsets after the first run;
//! - [`web_config`]: `--web.config.file`: TLS, client certificates, basic auth, rotation;
//! - [`architecture`]: the invariants of `src/`'s layout, read from the source text.

mod harness;

mod architecture;
mod check_rules;
mod deploy_role;
mod explain;
mod faults;
mod kanary;
mod metric_rules;
mod prometheus;
mod schedule;
mod web_config;
