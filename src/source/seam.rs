//! The seam every kind of source implements, and the values that cross it: what a fetch is asked
//! to do ([`Fetch`]), where rows go ([`RowSink`]), what can go wrong ([`FetchError`]) and what
//! `--check-rules` learns without running anything ([`StatementCheck`]). The decisions it makes for
//! every kind are in [`crate::source`]'s module doc.

use std::fmt;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::fixture::Fixture;
use crate::eval::cell::Cell;
use crate::rules::model::Rule;
pub use crate::rules::server::ServerIdentity;
use crate::rules::template;

/// How every session of the exporter names itself to a server (PostgreSQL's `application_name`,
/// MySQL's `program_name` connection attribute and statement comment), so a DBA sees who is querying.
pub const SESSION_NAME: &str = "sql-signal-exporter";

/// What a pooled source is built with besides its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// The server-side statement timeout: the slowest rule's timeout on the source, plus a second.
    pub statement_timeout: Duration,
    /// The longest pause between connection attempts after failures.
    pub max_backoff: Duration,
}

/// Why a fetch produced no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// No connection could be had (server down, wrong credentials, pool exhausted past the timeout).
    Connect(String),
    /// The source rejected or aborted the statement, or its template did not render.
    Query(String),
    /// A template of the rule did not render, so nothing was sent to the source.
    Render(String),
    /// The rule's timeout passed; the statement was cancelled at the source.
    Timeout(Duration),
    /// More rows than the rule allows; the rest were not read.
    TooManyRows(usize),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Connect(m) => write!(f, "cannot connect: {m}"),
            FetchError::Query(m) | FetchError::Render(m) => write!(f, "query failed: {m}"),
            FetchError::Timeout(d) => write!(f, "timed out after {} and was cancelled", humantime::format_duration(*d)),
            FetchError::TooManyRows(n) => write!(f, "returned more than max_rows ({n}) rows"),
        }
    }
}

/// Receives a result as the source decodes it: the column names once, then each row.
pub trait RowSink: Send {
    /// The result's column names, before any row.
    fn columns(&mut self, names: Vec<String>);
    /// One row, as long as the columns. An error stops the fetch (and cancels it at the source).
    fn row(&mut self, cells: Vec<Cell>) -> Result<(), FetchError>;
    /// Each statement as rendered, by name (see [`Placement::query_names`](crate::rules::model::Placement::query_names)), before any runs.
    fn statement(&mut self, name: &str, sql: &str);
    /// A source that runs several named statements announces each before its columns, so a sink
    /// that keeps results apart knows whose columns and rows follow; one that expects one result
    /// ignores it.
    fn query(&mut self, _name: &str) {}
}

/// The kinds of value sources decode into ([`Cell`]'s variants); `--check-rules --db` uses them to
/// tell whether a rule can read a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    Bool,
    Int,
    Float,
    Text,
    Timestamp,
    /// JSON: its value decides at run time.
    Json,
}

/// What a source knows of a result column before running the statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnType {
    /// Decoded into this kind; the source's name of the type.
    Known(Decoded, String),
    /// A type the source does not decode, by its name (cast it in the query).
    Unsupported(String),
    /// The source cannot tell before running (SQLite).
    Unknown,
}

/// One of a rule's statements as `--check-rules` sees it: prepared, or why not.
#[derive(Debug, Clone)]
pub struct StatementCheck {
    /// The statement's name (see [`Placement::query_names`](crate::rules::model::Placement::query_names)).
    pub query: String,
    pub result: Result<Prepared, FetchError>,
}

/// A statement as the source prepared it, not run.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The rendered SQL that was prepared.
    pub sql: String,
    /// What the source cannot bind of the rule's targets to this statement, each worded for the
    /// rules file's author (the parameters differ from the bound label columns, say).
    pub binding_problems: Vec<String>,
    pub columns: Vec<(String, ColumnType)>,
    /// How this kind's SQL casts `column` to text: the fix a message suggests for a column of a type
    /// the exporter cannot read (`x::text` in PostgreSQL, `CAST(x AS CHAR)` in MySQL).
    pub cast_to_text: fn(&str) -> String,
}

/// Where `prepare` has to go to answer: what decides whether `--check-rules` needs `--db` for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Prepared here, with no connection (an embedded engine): always checked.
    Local,
    /// Prepared by a server: checked with `--db`.
    Server,
}

/// When a statement's plan is worth a warning (`--check-rules --db --explain`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExplainLimits {
    /// A full scan over a table with more rows than this warns.
    pub min_rows: f64,
    /// An estimated total cost (in the planner's units) above this warns.
    pub max_cost: f64,
}

impl Default for ExplainLimits {
    fn default() -> ExplainLimits {
        ExplainLimits { min_rows: 100_000.0, max_cost: 100_000.0 }
    }
}

/// One fetch: the rule, whose statements and targets the source renders and binds its own way,
/// and how long it may take (waiting for a connection included).
#[derive(Clone, Copy)]
pub struct Fetch<'a> {
    pub rule: &'a Rule,
    pub timeout: Duration,
}

/// Renders a rule's one `query` for `server` (what the kind's server reported, or the database's
/// assumed identity before it did), worded the one way every kind reports it.
pub fn render_statement(rule: &Rule, server: &ServerIdentity) -> Result<String, FetchError> {
    template::render_query_described(rule, server).map_err(|m| {
        FetchError::Render(format!(
            "the query template does not render for {} (server_version_num {}): {m}",
            server.describe(),
            server.version_num
        ))
    })
}

/// What the newest session of a pooled source learnt of its server: written once per new
/// connection, read by every render. Until a session tells, the database's assumed identity.
#[derive(Debug, Default)]
pub struct ServerSlot(std::sync::RwLock<Option<ServerIdentity>>);

impl ServerSlot {
    /// What a new session reported; `None` when the server did not say (the assumption stands).
    pub fn learn(&self, told: Option<ServerIdentity>) {
        // A writer that panicked left a whole value behind: the lock's poison carries no meaning here.
        *self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = told;
    }

    /// The server's identity, or `assumed` before any session told it.
    pub fn identity_or(&self, assumed: impl FnOnce() -> ServerIdentity) -> ServerIdentity {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone().unwrap_or_else(assumed)
    }
}

/// Why a statement's parameters do not fit what the rule binds (`bound` label columns).
pub fn parameter_mismatch(used: usize, bound: usize) -> String {
    if bound == 0 {
        format!("the query uses {used} parameter(s) but this rule binds none; write the values into the query")
    } else {
        format!(
            "the query uses {used} parameter(s) but the rule binds {bound} ($1..${bound} are the target label arrays, one per label)"
        )
    }
}

/// The seam every kind of source implements.
pub trait Source: Send + Sync + fmt::Debug {
    /// The name of the database (or endpoint) in the rules file.
    fn name(&self) -> &str;
    /// Renders the rule's statements, binds its targets, runs them and pushes their rows into
    /// `sink`; every statement is announced with [`RowSink::statement`] as rendered.
    fn fetch<'a>(&'a self, fetch: Fetch<'a>, sink: &'a mut dyn RowSink) -> BoxFuture<'a, Result<(), FetchError>>;
    /// Prepares (never runs) each of the rule's statements: what `--check-rules` asks. `Err` when
    /// the source could not be asked at all (no connection).
    fn prepare<'a>(&'a self, fetch: Fetch<'a>) -> BoxFuture<'a, Result<Vec<StatementCheck>, FetchError>>;
    /// Whether [`Source::prepare`] needs a server.
    fn reach(&self) -> Reach;
    /// How a session is carried, e.g. `TLSv1.3 (TLS_AES_256_GCM_SHA384)`, for `--check-rules --db`;
    /// `None` when the source cannot tell or cannot be reached.
    fn transport(&self, _timeout: Duration) -> BoxFuture<'_, Option<String>> {
        Box::pin(async { None })
    }
    /// Plans (never runs) the rule's statement with its real bindings and judges the plan against
    /// `limits`: `--check-rules --db --explain`'s warnings. Sources without a planner say so.
    fn explain<'a>(
        &'a self,
        _fetch: Fetch<'a>,
        _limits: &'a ExplainLimits,
    ) -> BoxFuture<'a, Result<Vec<String>, FetchError>> {
        Box::pin(async { Err(FetchError::Query("this source has no query planner to ask".into())) })
    }
    /// A session that serves `fixture` instead of the real data, for one evaluation of a rule test
    /// (`--test-rules`); `timeout` bounds opening it. What a kind must guarantee:
    ///
    /// - the rule's statements run unchanged, rendered and bound as [`Source::fetch`] does;
    /// - a SQL kind takes a connection of its own (never returned to a pool), creates each
    ///   [`FixtureTable`](super::FixtureTable) as a temporary table of that name, so that it
    ///   shadows the real table for the rule's unqualified names, inside a transaction that
    ///   [`FixtureSession::finish`] rolls back before closing the connection; the rule's statement
    ///   then runs read-only, as in production;
    /// - an endpoint answers each named request with its
    ///   [`FixtureResponse`](super::FixtureResponse), judged like a real response (status, size),
    ///   and opens no socket: nothing is fetched, no proxy is asked;
    /// - a kind serves its own part of the fixture (tables for SQL, responses for endpoints) and
    ///   ignores the other, so one case may hold both for rules of both kinds;
    /// - what the fixture lacks (a request without an answer) is an error naming it, never a
    ///   fallback to real data; a table the fixture does not give is the real one (SQL kinds).
    fn open_fixture<'a>(
        &'a self,
        fixture: &'a Fixture,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Box<dyn FixtureSession>, FetchError>>;
    /// Connections open now, and those of them lent to a running statement.
    fn connections(&self) -> Connections;
    /// Closes idle connections; in-use ones close when returned.
    fn close(&self);
    /// Waits (at most `limit`) for cancel requests of abandoned statements to reach the source.
    fn drain(&self, limit: Duration) -> BoxFuture<'_, ()>;
}

/// A source's connections at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Connections {
    pub open: usize,
    pub in_use: usize,
}

/// A source serving a [`Fixture`] for one evaluation (see [`Source::open_fixture`]). Its `fetch` runs the rule's statements as the
/// source would, on the fixture's data; nothing it does is kept.
pub trait FixtureSession: Source {
    /// Ends the session: whatever the fixture created is undone (a SQL transaction rolled back, its
    /// connection closed). Dropping a session without finishing it closes its connection, which
    /// also ends the transaction on the server, uncommitted.
    fn finish(self: Box<Self>) -> BoxFuture<'static, Result<(), FetchError>>;
}

/// What every fixture session answers to [`Source::open_fixture`]: sessions do not nest.
pub fn nested_fixture_refused<'a>() -> BoxFuture<'a, Result<Box<dyn FixtureSession>, FetchError>> {
    Box::pin(async { Err(FetchError::Query("a fixture session cannot open another one".into())) })
}
