//! The integration tests, one crate and one harness: the exporter binary and library against real
//! PostgreSQL servers over real sockets. See [`harness`] for how servers are shared and how golden
//! files are rewritten.
//!
//! - [`kanary`]: `rules/kanary.yaml` reproduces the Go exporter (golden files), fail-safe and cost;
//! - [`metric_rules`]: metric rules on a real server, and `rules/postgres.yaml`;
//! - [`faults`]: faults, reload, secrets, shutdown and logs of the running binary;
//! - [`check_rules`]: `--check-rules` with the corpus in `tests/check_rules/`;
//! - [`convert`]: `--convert` from the peers' configurations, side by side with the real peers;
//! - [`endpoints`]: rules on HTTP JSON endpoints against a fixture server (DTR, Matillion, typing);
//! - [`rule_tests`]: `--test-rules`: the shipped rule tests, mutations they catch, no fetch, no residue;
//! - [`explain`]: `--check-rules --db --explain`: costly plans warn, nothing runs;
//! - [`deploy_role`]: `examples/postgres/role.sql` is enough for the shipped rules, and no more;
//! - [`prometheus`]: a real Prometheus scrapes us and evaluates the shipped alerts and dashboard;
//! - [`mysql`]: MySQL/MariaDB as a source: Kanary, types, faults, `--check-rules --db`;
//! - [`postgres_tls`]: TLS to PostgreSQL (every sslmode, failures named), rotating passwords, PgBouncer;
//! - [`status`]: the status page and `/api/v1/status` say why each target is in error (with Chromium);
//! - [`server_identity`]: templates see each server's flavour and version (PostgreSQL, MariaDB);
//! - [`schedule`]: rules sharing an interval run at their own offsets after the first run;
//! - [`web_config`]: `--web.config.file`: TLS, client certificates, basic auth, rotation;
//! - [`hostile_input`]: property tests of the loader, and its time bound on the release binary;
//! - [`stall`]: a stalling network, a silent server, reload consistency;
//! - [`architecture`]: the invariants of `src/`'s layout, read from the source text.

mod harness;

mod architecture;
mod check_rules;
mod convert;
mod deploy_role;
mod endpoints;
mod explain;
mod faults;
mod histograms;
mod hostile_input;
mod kanary;
mod metric_rules;
mod mysql;
mod postgres_tls;
mod prometheus;
mod rule_tests;
mod schedule;
mod server_identity;
mod stall;
mod status;
mod web_config;
