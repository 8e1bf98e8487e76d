//! The validated, typed model of a rules file.
//!
//! Everything downstream (scheduler, source, evaluation, rendering) works on these types only, never on
//! YAML. A value of these types has already passed the JSON Schema and the semantic checks in
//! the loader, so the rest of the program can rely on its invariants (durations parsed, targets
//! expanded, labels consistent) instead of re-checking them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::conninfo::ConnInfo;
use super::server::{Flavour, ServerIdentity};
use crate::secret::Secret;

/// Every rule and database of all loaded rules files.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub databases: BTreeMap<String, Arc<Database>>,
    pub endpoints: BTreeMap<String, Arc<Endpoint>>,
    /// Rules in the order they were declared, across files.
    pub rules: Vec<Arc<Rule>>,
}

impl RuleSet {
    /// The servers `rule`'s templates are rendered for before any was asked: one per distinct
    /// assumed identity of its databases (PostgreSQL's when none is declared), SQLite's on an
    /// endpoint.
    pub fn assumed_servers(&self, rule: &Rule) -> Vec<ServerIdentity> {
        let flavours: Vec<Flavour> = match &rule.placement {
            Placement::Endpoint(_) => vec![Flavour::Sqlite],
            Placement::Databases(names) => {
                let mut found: Vec<Flavour> =
                    names.iter().filter_map(|n| self.databases.get(n)).map(|db| db.assumed_flavour).collect();
                found.sort_by_key(|f| Flavour::ALL.iter().position(|a| a == f));
                found.dedup();
                if found.is_empty() {
                    found.push(Flavour::default());
                }
                found
            }
        };
        flavours.into_iter().map(ServerIdentity::assumed).collect()
    }

    fn rules_on<'a>(&'a self, source: &'a str) -> impl Iterator<Item = &'a Arc<Rule>> + 'a {
        self.rules.iter().filter(move |r| r.placement.sources().any(|s| s == source))
    }

    /// The server-side `statement_timeout` of a database's sessions: its slowest rule's timeout plus
    /// a second, so the client-side cancel normally comes first and the server's is a backstop.
    pub fn statement_timeout(&self, database: &str) -> Duration {
        self.rules_on(database).map(|r| r.timeout).max().unwrap_or(Duration::from_secs(30)) + Duration::from_secs(1)
    }

    /// How long a source may take to be reached: a database's `connect_timeout`, an endpoint's
    /// `timeout`.
    pub fn connect_timeout(&self, source: &str) -> Duration {
        match (self.databases.get(source), self.endpoints.get(source)) {
            (Some(db), _) => db.connect_timeout,
            (None, Some(ep)) => ep.timeout,
            (None, None) => Duration::from_secs(10),
        }
    }

    /// The longest pause between connection attempts to a database after failures: half its
    /// shortest rule interval, so a database that comes back is seen within one interval.
    pub fn max_backoff(&self, database: &str) -> Duration {
        self.rules_on(database).map(|r| r.interval / 2).min().unwrap_or(Duration::from_secs(30))
    }
}

/// Where one database lives and how the exporter's sessions behave on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Database {
    pub name: String,
    /// The server's engine, chosen by the DSN's scheme: what kind of source serves the database.
    pub engine: Engine,
    /// The flavour templates assume until the server tells its own (see [`Database::assumed_server`]).
    pub assumed_flavour: Flavour,
    /// The DSN with `${VAR}` already expanded. Never printed: see [`Secret`].
    pub dsn: Secret,
    /// The DSN parsed (see [`ConnInfo`]); its values are as secret as the DSN.
    pub conninfo: ConnInfo,
    pub max_connections: usize,
    pub connect_timeout: Duration,
    pub lock_timeout: Duration,
    /// Where each new connection gets its password, when not from the DSN.
    pub password: PasswordSource,
    /// A connection pooler in between: session settings go per transaction, not into startup.
    pub pooler: Option<Pooler>,
}

impl Database {
    /// The server templates render for until one of its sessions tells the real one: loading and
    /// `--check-rules` without `--db` render with it.
    pub fn assumed_server(&self) -> ServerIdentity {
        ServerIdentity::assumed(self.assumed_flavour)
    }
}

/// The engine a database runs, told by its DSN: `mysql://` or `mariadb://` is MySQL (or MariaDB),
/// anything else PostgreSQL (a libpq URL or `key=value` string).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    #[default]
    Postgres,
    /// MySQL or MariaDB (the source tells which when it connects).
    MySql,
}

/// Where a new connection's password comes from. Rotating credentials are read per connection.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum PasswordSource {
    /// The DSN's `password` (or none).
    #[default]
    Dsn,
    /// A file re-read for each new connection (a mounted secret changes under us).
    File(PathBuf),
    /// A program (argv, no shell) whose standard output is the password, run for a new connection
    /// unless its last output is younger than `cache_ttl`.
    Command { argv: Vec<String>, timeout: Duration, cache_ttl: Duration },
}

/// The pooling mode of a pooler between the exporter and the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooler {
    /// PgBouncer `pool_mode = transaction`, RDS Proxy, Supavisor: a session lasts one transaction.
    Transaction,
}

/// One rule: a query run on an interval, and what its rows become.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    /// Where the rule was declared, for messages.
    pub file: PathBuf,
    /// Where the rule runs: its databases, or its endpoint with what it fetches there.
    pub placement: Placement,
    pub interval: Duration,
    pub timeout: Duration,
    /// Most rows the query may return before the rule fails.
    pub max_rows: usize,
    /// Most series one evaluation may produce before the rule fails and serves none.
    pub max_series: usize,
    /// The minijinja template the SQL is rendered from.
    pub query: String,
    /// Constants the template and expressions see as `vars`.
    pub vars: serde_json::Value,
    pub kind: RuleKind,
    /// Gauges the rule reports about its own evaluation.
    pub health: RuleHealth,
}

/// Where a rule runs: the one typed reference to its sources. Only a source kind reads what is
/// particular to it (an endpoint's requests); everything else asks [`Placement::sources`].
#[derive(Debug, Clone, PartialEq)]
pub enum Placement {
    /// Databases by name, in declaration order; one for a signal, one or more for a metric rule.
    Databases(Vec<String>),
    /// An endpoint, with the requests and named queries the rule runs there.
    Endpoint(Arc<EndpointRule>),
}

impl Placement {
    /// The names of the sources the rule reads, in declaration order.
    pub fn sources(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        let names: &[String] = match self {
            Placement::Databases(names) => names,
            Placement::Endpoint(e) => std::slice::from_ref(&e.endpoint),
        };
        names.iter().map(String::as_str)
    }

    /// The statements the rule runs, each by name: a rule on a database runs its one `query`.
    pub fn query_names(&self) -> Vec<&str> {
        match self {
            Placement::Databases(_) => vec![MAIN_QUERY],
            Placement::Endpoint(e) => e.queries.iter().map(|(n, _)| n.as_str()).collect(),
        }
    }
}

/// The name of a signal's query, and of a metric rule's when it has `query` rather than `queries`.
pub const MAIN_QUERY: &str = "query";

/// Gauges a rule may declare about its own evaluation (today on endpoint rules: `up`, `latency`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RuleHealth {
    /// Reads 1 when the evaluation succeeded (every request and query), else 0.
    pub up: Option<MetricDescriptor>,
    /// The seconds the evaluation took, served when it succeeded.
    pub latency: Option<MetricDescriptor>,
}

// A rule set holds a handful of rules for the process's lifetime: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    Signal(SignalRule),
    Metric(MetricRule),
}

/// What a rule binds to its query: a table of its targets, one column per label (in `labels`
/// order), one row per declared target. A metric rule binds nothing; a signal that discovers its
/// targets binds its label columns with no rows. Each source kind binds the table its own way (see
/// `crate::source`).
#[derive(Debug, Clone, Copy)]
pub struct Bindings<'a> {
    pub labels: &'a [String],
    pub targets: &'a [Vec<String>],
}

impl Bindings<'_> {
    /// The table by column: the values of each label, one per target.
    pub fn columns(&self) -> Vec<Vec<String>> {
        (0..self.labels.len()).map(|i| self.targets.iter().map(|t| t[i].clone()).collect()).collect()
    }
}

impl Rule {
    /// What the rule binds to its query.
    pub fn bindings(&self) -> Bindings<'_> {
        match &self.kind {
            RuleKind::Signal(s) => Bindings { labels: &s.labels, targets: s.targets.as_deref().unwrap_or(&[]) },
            RuleKind::Metric(_) => Bindings { labels: &[], targets: &[] },
        }
    }
}

/// A health signal: the newest `window` results of each target decide up or down.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalRule {
    /// Label names identifying a target; also the result columns that carry them.
    pub labels: Vec<String>,
    /// The expected targets, each a value per label in `labels` order. `None`: discovered from rows.
    pub targets: Option<Vec<Vec<String>>>,
    pub window: usize,
    pub min_rows: usize,
    pub order_by: Option<String>,
    pub freshness: Option<Freshness>,
    /// Columns the success expression reads, in declaration order.
    pub values: Vec<(String, ValueType)>,
    /// A minijinja expression over one result.
    pub success: String,
    pub up: MetricDescriptor,
    pub error: MetricDescriptor,
    pub reason_label: String,
    pub reasons: Reasons,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Freshness {
    pub column: String,
    pub max_age: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    Integer,
    Float,
    Text,
    Bool,
    Timestamp,
}

impl ValueType {
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::Integer => "integer",
            ValueType::Float => "float",
            ValueType::Text => "text",
            ValueType::Bool => "bool",
            ValueType::Timestamp => "timestamp",
        }
    }
}

/// A metric name with its HELP text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricDescriptor {
    pub name: String,
    pub help: String,
}

/// Why a signal could not judge a target. Each failure maps to a `reason` label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    QueryFailed,
    TooFewRows,
    BadTimestamp,
    Stale,
    BadValue,
}

impl Failure {
    pub const ALL: [Failure; 5] =
        [Failure::QueryFailed, Failure::TooFewRows, Failure::BadTimestamp, Failure::Stale, Failure::BadValue];

    /// The key of this failure in the rules file's `reasons` map, also its default reason.
    pub fn key(self) -> &'static str {
        match self {
            Failure::QueryFailed => "query_failed",
            Failure::TooFewRows => "too_few_rows",
            Failure::BadTimestamp => "bad_timestamp",
            Failure::Stale => "stale",
            Failure::BadValue => "bad_value",
        }
    }
}

/// The reason label value for each [`Failure`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reasons {
    by_failure: [String; 5],
}

impl Default for Reasons {
    fn default() -> Self {
        Reasons { by_failure: Failure::ALL.map(|f| f.key().to_string()) }
    }
}

impl Reasons {
    pub fn set(&mut self, failure: Failure, reason: String) {
        self.by_failure[failure as usize] = reason;
    }

    pub fn of(&self, failure: Failure) -> &str {
        &self.by_failure[failure as usize]
    }

    /// The distinct reason values, sorted: every target exports each of them.
    pub fn distinct(&self) -> Vec<&str> {
        let mut all: Vec<&str> = self.by_failure.iter().map(String::as_str).collect();
        all.sort_unstable();
        all.dedup();
        all
    }
}

/// A metric rule: every row of the query becomes series of one or more metric families.
///
/// A rule that names several databases ([`Placement::Databases`]) runs its query once on each per
/// interval; each series then carries `database_label`, whose value is the database's name in the
/// rules file.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRule {
    /// The label naming the database on every series, when set (always set for several databases).
    pub database_label: Option<String>,
    pub families: Vec<MetricFamily>,
}

/// How one metric family is read from a rule's rows.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricFamily {
    /// The declared name; for a family named from a column, the pattern its names follow
    /// (`PREFIX<column>SUFFIX`, see [`NameFrom::pattern`]), which messages show.
    pub name: String,
    /// Whether the name is declared or each row's key names the family.
    pub naming: FamilyNaming,
    pub help: String,
    pub kind: MetricKind,
    /// The label names of the values read from columns (`key_labels`), in declaration order.
    pub key_labels: Vec<String>,
    /// The column each key label reads, in `key_labels` order: the label's own name unless
    /// `key_columns` names another (a `SHOW` statement's `Master_Host` for `master_host`).
    pub key_columns: Vec<String>,
    /// What a key label whose column the result lacks reads.
    pub absent_key_columns: AbsentKeyColumns,
    /// Texts a value column may hold that read as numbers (`text_values`).
    pub text_values: TextValues,
    /// Labels with a fixed value, in declaration order.
    pub static_labels: Vec<(String, String)>,
    pub values: FamilyValues,
    pub on_null: OnNull,
    pub on_empty: OnEmpty,
    pub on_error: OnError,
    /// The named query of an endpoint rule this family reads (`None`: the rule's only query).
    pub query: Option<String>,
    /// The unit the name ends in (`seconds`), exported as OpenMetrics' `# UNIT`.
    pub unit: Option<String>,
    /// The column holding when a counter, histogram or summary series started counting (a time or
    /// epoch seconds), exported as OpenMetrics' `_created`.
    pub created: Option<String>,
}

/// How a family gets its name.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum FamilyNaming {
    /// `name:` as written: one family.
    #[default]
    Declared,
    /// `name_from:`: each row's key names the family its series belong to, so one declaration gives
    /// a family per key (mysqld_exporter's `SHOW GLOBAL STATUS`, postgres_exporter's `pg_settings`).
    FromColumn(Arc<NameFrom>),
}

/// What a key label reads when the result has no column of its name: statements whose columns
/// vary by server (`SHOW SLAVE STATUS` has `Master_UUID` on MySQL, not on MariaDB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AbsentKeyColumns {
    /// The rule fails, naming the column: a mistyped column must not pass for an empty label.
    #[default]
    Fail,
    /// The label reads the empty string, as mysqld_exporter gives a column the server lacks.
    Empty,
}

/// Texts that read as numbers in a family's value columns (`text_values`), compared without case:
/// mysqld_exporter's `Yes`/`No`/`ON`/`OFF`, declared in the rules rather than known to the engine.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TextValues {
    /// Keyed by the text lowercased.
    by_text: BTreeMap<String, f64>,
}

impl TextValues {
    /// The declared texts; two that differ only in case are one (the loader refuses that).
    pub fn new(declared: impl IntoIterator<Item = (String, f64)>) -> TextValues {
        TextValues { by_text: declared.into_iter().map(|(t, v)| (t.to_lowercase(), v)).collect() }
    }

    /// The number `text` reads as: a declared text (any case, surrounding blanks ignored), else the
    /// text parsed as a number; `None` when it is neither.
    pub fn number(&self, text: &str) -> Option<f64> {
        let t = text.trim();
        self.by_text.get(&t.to_lowercase()).copied().or_else(|| t.parse::<f64>().ok())
    }

    pub fn is_empty(&self) -> bool {
        self.by_text.is_empty()
    }
}

/// What names the families of a `name_from` declaration.
#[derive(Debug, Clone, PartialEq)]
pub enum NameKey {
    /// `column: X`: each row's value of column X is the key; the family's value column the value.
    Column(String),
    /// `columns: each`: every result column other than the key labels' is a key, its cell the value;
    /// a cell that is no number (nor a declared text) gives no series (mysqld_exporter's
    /// `SHOW SLAVE STATUS`).
    EachColumn,
}

/// A family named from a column: `prefix`, the key made a name part ([`metric_name_part`]),
/// `suffix`.
#[derive(Debug, Clone, PartialEq)]
pub struct NameFrom {
    /// What the key is: a column's value, or each column's name.
    pub key: NameKey,
    pub prefix: String,
    pub suffix: String,
    /// Per generated name (the full name), the type and help that replace the family's.
    pub overrides: BTreeMap<String, NameOverride>,
    /// Names the loaded rules claim elsewhere that this family could generate, each with the rule
    /// that claims it: a row giving one is refused (`name_conflict`), never a second family.
    pub taken: BTreeMap<String, String>,
}

/// What `overrides:` sets for one generated name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NameOverride {
    pub kind: Option<MetricKind>,
    pub help: Option<String>,
}

impl NameFrom {
    /// The name of the family a row with `key` belongs to.
    pub fn family_name(&self, key: &str) -> String {
        format!("{}{}{}", self.prefix, metric_name_part(key), self.suffix)
    }

    /// The shape of the names, for messages: `PREFIX<column>SUFFIX` (`<each column>`).
    pub fn pattern(&self) -> String {
        let key = match &self.key {
            NameKey::Column(c) => c.as_str(),
            NameKey::EachColumn => "each column",
        };
        format!("{}<{key}>{}", self.prefix, self.suffix)
    }

    /// Whether this family could generate `name`.
    pub fn could_generate(&self, name: &str) -> bool {
        name.len() > self.prefix.len() + self.suffix.len()
            && name.starts_with(&self.prefix)
            && name.ends_with(&self.suffix)
    }
}

/// A row's key as part of a metric name: every character outside `[a-zA-Z0-9_]` becomes `_`, then
/// the whole is lowercased. This is mysqld_exporter's `validPrometheusName` (regexp `[^a-zA-Z0-9_]`
/// replaced by `_`, then `strings.ToLower`), so `SHOW GLOBAL STATUS` keys give its names, and it
/// turns postgres_exporter's `pg_settings` keys (`autovacuum.naptime`-like names with `.` or `-`)
/// into names the same way. `:` is replaced too: Prometheus keeps it for recording rules.
pub fn metric_name_part(key: &str) -> String {
    key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c.to_ascii_lowercase() } else { '_' }).collect()
}

/// The kind of a metric family. `Info` and `StateSet` are gauges in the text format (it has neither
/// type) and their own types in OpenMetrics; an info family's name ends in `_info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricKind {
    #[default]
    Gauge,
    /// The value is the current total, read as is (the database keeps the count).
    Counter,
    Info,
    /// Buckets of observations: from bucket rows or counted from raw values (see [`Histogram`]).
    Histogram,
    /// Quantiles with their sum and count, from quantile rows (see [`Summary`]).
    Summary,
    /// A column's value against declared states: 1 for the current state, 0 for the others.
    #[serde(rename = "stateset")]
    StateSet,
    /// A value of unknown meaning (`# TYPE untyped`, OpenMetrics' `unknown`): what mysqld_exporter
    /// gives a status or variable key it knows nothing about. No naming rule applies.
    Untyped,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Gauge => "gauge",
            MetricKind::Counter => "counter",
            MetricKind::Info => "info",
            MetricKind::Histogram => "histogram",
            MetricKind::Summary => "summary",
            MetricKind::StateSet => "stateset",
            MetricKind::Untyped => "untyped",
        }
    }
}

/// Where a family's values come from.
#[derive(Debug, Clone, PartialEq)]
pub enum FamilyValues {
    /// One value column: one series per row.
    Column(String),
    /// Several value columns, one series per row and column; `label` names the column.
    Unpivot {
        label: String,
        columns: Vec<String>,
    },
    /// No value column: every series is 1 (info families).
    One,
    Histogram(Histogram),
    Summary(Summary),
    StateSet(StateSet),
}

/// A histogram family's rows: which of the two shapes, and its columns.
#[derive(Debug, Clone, PartialEq)]
pub enum Histogram {
    /// One row per bucket and label set: the bound, its count, the sum (and maybe the count).
    BucketRows(BucketRows),
    /// One row per observation, counted into the declared buckets as the rows stream.
    Observations { column: String, buckets: Vec<f64> },
}

/// Bucket rows: `le` holds the bound (a number or `+Inf`), `bucket` its count.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketRows {
    pub le: String,
    pub bucket: String,
    pub counts: BucketCounts,
    pub sum: String,
    /// The `_count` column; when absent, `_count` is the `+Inf` bucket.
    pub count: Option<String>,
}

/// What a bucket row's count is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BucketCounts {
    /// Observations at or below the bound (Prometheus's own shape).
    #[default]
    Cumulative,
    /// Observations in this bucket only (above the previous bound): summed into the cumulative form.
    PerBucket,
}

/// Quantile rows: one row per quantile and label set.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub quantile: String,
    pub value: String,
    pub sum: String,
    pub count: String,
}

/// A state set: `column`'s value is one of `states`.
#[derive(Debug, Clone, PartialEq)]
pub struct StateSet {
    pub column: String,
    pub states: Vec<String>,
}

impl FamilyValues {
    /// The value columns read, in declaration order, each with its key below the family in the
    /// rules file (`value`, `histogram/sum`).
    pub fn columns(&self) -> Vec<(&str, &'static str)> {
        match self {
            FamilyValues::Column(c) => vec![(c, "value")],
            FamilyValues::Unpivot { columns, .. } => columns.iter().map(|c| (c.as_str(), "values")).collect(),
            FamilyValues::One => Vec::new(),
            FamilyValues::Histogram(Histogram::Observations { column, .. }) => vec![(column, "histogram/observe")],
            FamilyValues::Histogram(Histogram::BucketRows(b)) => {
                let mut out =
                    vec![(b.le.as_str(), "histogram/le"), (&b.bucket, "histogram/bucket"), (&b.sum, "histogram/sum")];
                out.extend(b.count.as_deref().map(|c| (c, "histogram/count")));
                out
            }
            FamilyValues::Summary(s) => vec![
                (s.quantile.as_str(), "summary/quantile"),
                (&s.value, "summary/value"),
                (&s.sum, "summary/sum"),
                (&s.count, "summary/count"),
            ],
            FamilyValues::StateSet(s) => vec![(s.column.as_str(), "stateset/column")],
        }
    }
}

/// What a NULL value becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnNull {
    /// No series for that row and column.
    #[default]
    Skip,
    /// The series is reported as 0.
    Zero,
}

/// What a family exports when the query returns no rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnEmpty {
    /// No series.
    #[default]
    None,
    /// One series of value 0 (per unpivoted column); only for families without key labels.
    Zero,
    /// The rule fails: a path that matches nothing (a renamed field) must not pass for "none".
    Fail,
}

/// What a family exports when the rule fails (query error, timeout, bad value, duplicate series).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// No series: the family's series are withdrawn, never served stale.
    #[default]
    None,
    /// One series of value 0 (per unpivoted column), e.g. an `up` metric that reads 0 when the
    /// database cannot be reached; only for families without key labels.
    Zero,
}

// Endpoints (`endpoints:`) and the rules that read them. An endpoint is where JSON comes from and
// how to reach it; a rule on an endpoint names the requests it makes there and the SQL it runs over
// the responses. Credentials are [`Secret`]s: no message or log shows them.

/// One HTTP JSON API, as declared under `endpoints:`.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub name: String,
    /// Scheme, host, port and optional path prefix (`${VAR}` expanded); request paths are appended.
    pub url: String,
    /// Headers sent with every request (values may hold tokens: secret).
    pub headers: Vec<(String, Secret)>,
    pub auth: Option<Auth>,
    pub tls: Tls,
    pub proxy: Proxy,
    /// Longest a request may take, connecting included (a rule's own timeout bounds it as well).
    pub timeout: Duration,
    /// Largest body accepted, after decompression.
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    Basic { username: String, password: Secret },
    Bearer(Secret),
}

/// How the server's certificate is checked and which certificate the exporter presents.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tls {
    /// PEM roots to trust instead of the built-in Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain and its key.
    pub client: Option<(PathBuf, PathBuf)>,
    /// The name the certificate must carry, when it differs from the URL's host.
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub enum Proxy {
    /// Direct connections; proxy environment variables are ignored.
    #[default]
    None,
    /// Through this proxy URL (may hold credentials: secret).
    Url(Secret),
    /// As `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY` say.
    FromEnv,
}

/// What a rule on an endpoint fetches and computes.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointRule {
    /// The endpoint's name under `endpoints:`.
    pub endpoint: String,
    /// Fetched concurrently; each response is bound to the SQL as `:name`.
    pub requests: Vec<Request>,
    /// Named SQL statements over the responses, in declaration order. A signal has one.
    pub queries: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub name: String,
    pub method: String,
    /// Appended to the endpoint's URL; a minijinja template over `vars`.
    pub path: String,
    /// Query string pairs (values are templates), appended URL-encoded.
    pub query: Vec<(String, String)>,
    /// Sent as is, with `Content-Type: application/json`; a template.
    pub body: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::metric_name_part;

    #[test]
    fn keys_become_name_parts_as_mysqld_exporter_makes_them() {
        assert_eq!(metric_name_part("Com_select"), "com_select");
        assert_eq!(metric_name_part("Innodb_buffer_pool_pages_free"), "innodb_buffer_pool_pages_free");
        assert_eq!(metric_name_part("autovacuum.naptime"), "autovacuum_naptime");
        assert_eq!(metric_name_part("wsrep-provider:name"), "wsrep_provider_name");
        assert_eq!(metric_name_part("a b\tc"), "a_b_c");
        // One `_` per character, not per byte: a key of non-ASCII text keeps its length in chars.
        assert_eq!(metric_name_part("größe"), "gr__e");
        assert_eq!(metric_name_part("9lives"), "9lives");
        assert_eq!(metric_name_part(""), "");
    }
}
