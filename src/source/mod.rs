//! Sources: where a rule's rows come from, behind one seam that every kind of source implements.
//!
//! A source is the only place that does I/O for a rule: it renders the rule's SQL with facts only it
//! knows (PostgreSQL's `server_version_num`), binds the rule's targets, runs the statement within
//! the rule's timeout and pushes the rows it decodes into a [`RowSink`]. [`postgres`] is the first
//! kind; [`http`], JSON over HTTP queried in an embedded SQLite, is the second. Decisions the seam
//! makes for every kind:
//!
//! - **Targets are bound as a table, not as arrays.** A rule binds [`Bindings`]: one column per
//!   label, one row per target. PostgreSQL passes each column as a `text[]` parameter (`$1`, `$2`, …);
//!   a source without arrays (SQLite) can load the same table as a temporary table `targets`.
//! - **Rows stream.** `fetch` pushes each decoded row into a [`RowSink`] as it arrives and never
//!   holds the result itself, so an evaluation that folds rows as they come needs no memory for the
//!   whole result. [`Collect`] is the sink that keeps them, with the rule's `max_rows`.
//! - **Prepare tells what the source knows.** [`Prepared`] gives the number of parameters and each
//!   result column's name with a [`ColumnType`] that may be [`ColumnType::Unknown`]: SQLite knows
//!   names but no types before it runs a statement.
//! - **Sources may block.** The seam is async and every method returns a boxed future, so a kind
//!   whose library blocks runs its work off the runtime threads inside its own future.
//!
//! Every message a source returns is scrubbed of its credentials.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::eval::cell::{Cell, ResultSet};
use crate::rules::model::{Bindings, Database, Endpoint, RuleSet};

pub mod http;
pub mod postgres;
pub mod tls;

/// Renders a rule's SQL from what the source knows about itself: the server's
/// `server_version_num` for PostgreSQL ([`crate::rules::template::ASSUMED_SERVER_VERSION_NUM`] when
/// the server did not tell). A render error sends nothing to the source.
pub type Render<'a> = &'a (dyn Fn(i64) -> Result<String, String> + Send + Sync);

/// Why a fetch produced no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// No connection could be had (server down, wrong credentials, pool exhausted past the timeout).
    Connect(String),
    /// The source rejected or aborted the statement, or its template did not render.
    Query(String),
    /// The rule's timeout passed; the statement was cancelled at the source.
    Timeout(Duration),
    /// More rows than the rule allows; the rest were not read.
    TooManyRows(usize),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Connect(m) => write!(f, "cannot connect: {m}"),
            FetchError::Query(m) => write!(f, "query failed: {m}"),
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
    /// A source that runs several named statements (an endpoint rule's `queries`) announces each
    /// before its columns; a sink that expects one result ignores it.
    fn query(&mut self, _name: &str) {}
}

/// The sink that keeps every row, failing past `max_rows`.
#[derive(Debug, Default)]
pub struct Collect {
    pub result: ResultSet,
    max_rows: usize,
}

impl Collect {
    pub fn new(max_rows: usize) -> Collect {
        Collect { result: ResultSet::default(), max_rows }
    }
}

impl RowSink for Collect {
    fn columns(&mut self, names: Vec<String>) {
        self.result.columns = names;
    }

    fn row(&mut self, cells: Vec<Cell>) -> Result<(), FetchError> {
        if self.result.rows.len() >= self.max_rows {
            return Err(FetchError::TooManyRows(self.max_rows));
        }
        if cells.len() != self.result.columns.len() {
            // The evaluations index rows by column position; hold rows to that shape here, once.
            return Err(FetchError::Query("the source returned a row whose length differs from the columns".into()));
        }
        self.result.rows.push(cells);
        Ok(())
    }
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

/// A statement as the source prepared it, not run.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The rendered SQL that was prepared.
    pub sql: String,
    /// How many parameters the statement uses.
    pub params: usize,
    /// Parameters the source cannot bind a rule's target column to: (1-based number, its type).
    pub unbindable_params: Vec<(usize, String)>,
    pub columns: Vec<(String, ColumnType)>,
}

/// A statement's plan, not run: what `--check-rules --db --explain` judges.
#[derive(Debug, Clone)]
pub struct Explained {
    /// The rendered SQL that was planned.
    pub sql: String,
    /// The plan in PostgreSQL's `EXPLAIN (FORMAT JSON, VERBOSE)` shape.
    pub plan: serde_json::Value,
    /// The estimated size of every table the plan reads.
    pub tables: Vec<TableSize>,
}

/// A table's estimated row count (PostgreSQL: `pg_class.reltuples`, -1 when never analyzed).
#[derive(Debug, Clone, PartialEq)]
pub struct TableSize {
    pub schema: String,
    pub table: String,
    pub rows: f64,
}

/// One fetch: the statement, what it binds, and how long it may take (waiting for a connection
/// included).
pub struct Fetch<'a> {
    pub render: Render<'a>,
    pub bindings: Bindings<'a>,
    pub timeout: Duration,
    /// For a rule on an endpoint: its requests and queries, rendered (`render` is then unused).
    pub http: Option<&'a http::Work>,
}

/// The seam every kind of source implements.
pub trait Source: Send + Sync + fmt::Debug {
    /// The name of the database (or endpoint) in the rules file.
    fn name(&self) -> &str;
    /// Runs one statement, pushing its rows into `sink`.
    fn fetch<'a>(&'a self, fetch: Fetch<'a>, sink: &'a mut dyn RowSink) -> BoxFuture<'a, Result<(), FetchError>>;
    /// Prepares (never runs) the statement `render` makes: what `--check-rules --db` asks.
    fn prepare<'a>(&'a self, render: Render<'a>, timeout: Duration) -> BoxFuture<'a, Result<Prepared, FetchError>>;
    /// How a session is carried, e.g. `TLSv1.3 (TLS_AES_256_GCM_SHA384)`, for `--check-rules --db`;
    /// `None` when the source cannot tell or cannot be reached.
    fn transport(&self, _timeout: Duration) -> BoxFuture<'_, Option<String>> {
        Box::pin(async { None })
    }
    /// Plans (never runs) the statement with the rule's bindings: `--check-rules --db --explain`.
    /// Sources without a planner (endpoints) say so.
    fn explain<'a>(&'a self, _fetch: Fetch<'a>) -> BoxFuture<'a, Result<Explained, FetchError>> {
        Box::pin(async { Err(FetchError::Query("this source has no query planner to ask".into())) })
    }
    /// Connections open now, and those of them lent to a running statement.
    fn connections(&self) -> (usize, usize);
    /// Closes idle connections; in-use ones close when returned.
    fn close(&self);
    /// Waits (at most `limit`) for cancel requests of abandoned statements to reach the source.
    fn drain(&self, limit: Duration) -> BoxFuture<'_, ()>;
}

/// A database's source, or why none could be built (a bad setting fails that database's rules only).
pub type SourceSlot = Arc<Result<Box<dyn Source>, String>>;

/// The sources of a rule set, one per database, built the one way that the scheduler, `--once` and
/// `--check-rules --db` all use.
#[derive(Default)]
pub struct Sources {
    /// Each database's source, with the database and settings it was built from (to keep it across
    /// a reload that changes neither).
    slots: HashMap<String, (Arc<Database>, Settings, SourceSlot)>,
    /// Each endpoint's source, with the endpoint it was built from.
    endpoints: HashMap<String, (Arc<Endpoint>, SourceSlot)>,
}

/// What a PostgreSQL pool is built with besides the database itself.
type Settings = (Duration, Duration);

impl Sources {
    /// Sources for every database of `set`. A source of `previous` whose database and settings are
    /// unchanged is kept (its connections live on); the others of `previous` are closed.
    pub fn build(set: &RuleSet, mut previous: Sources) -> Sources {
        let mut slots = HashMap::new();
        for (name, db) in &set.databases {
            // statement_timeout backstops the slowest rule; backoff stays below the shortest interval.
            let settings = (set.statement_timeout(name), set.max_backoff(name));
            let slot = match previous.slots.remove(name) {
                Some((old_db, old_settings, slot)) if old_db == *db && old_settings == settings => slot,
                old => {
                    if let Some((_, _, slot)) = old {
                        close(&slot);
                    }
                    let built = postgres::PgSource::new(db.clone(), settings.0, settings.1)
                        .map(|s| Box::new(s) as Box<dyn Source>);
                    if let Err(msg) = &built {
                        tracing::error!(database = %name, error = %msg, "cannot set up database");
                    }
                    Arc::new(built)
                }
            };
            slots.insert(name.clone(), (db.clone(), settings, slot));
        }
        let mut endpoints = HashMap::new();
        for (name, ep) in &set.endpoints {
            let slot = match previous.endpoints.remove(name) {
                Some((old, slot)) if old == *ep => slot,
                _ => {
                    let built = http::HttpSource::new(ep.clone()).map(|s| Box::new(s) as Box<dyn Source>);
                    if let Err(msg) = &built {
                        tracing::error!(endpoint = %name, error = %msg, "cannot set up endpoint");
                    }
                    Arc::new(built)
                }
            };
            endpoints.insert(name.clone(), (ep.clone(), slot));
        }
        previous.close();
        Sources { slots, endpoints }
    }

    /// The source of `database`, or why there is none, worded once for every caller.
    pub fn slot(&self, database: &str) -> SourceSlot {
        if let Some((_, slot)) = self.endpoints.get(database) {
            return slot.clone();
        }
        match self.slots.get(database) {
            Some((_, _, slot)) => slot.clone(),
            None => Arc::new(Err(format!("database '{database}' is not declared, so it has no connection pool"))),
        }
    }

    /// Closes every source.
    pub fn close(&mut self) {
        for (_, (_, _, slot)) in self.slots.drain() {
            close(&slot);
        }
        self.endpoints.clear();
    }

    /// Closes every source and waits (at most `limit` each) for their cancel requests.
    pub async fn shut_down(&mut self, limit: Duration) {
        self.endpoints.clear();
        for (_, (_, _, slot)) in self.slots.drain() {
            if let Ok(src) = slot.as_ref() {
                src.close();
                src.drain(limit).await;
            }
        }
    }
}

fn close(slot: &SourceSlot) {
    if let Ok(src) = slot.as_ref() {
        src.close();
    }
}

/// A slot as the evaluation takes it: the source, or why there is none.
pub fn as_source(slot: &SourceSlot) -> Result<&dyn Source, &str> {
    match slot.as_ref() {
        Ok(s) => Ok(s.as_ref()),
        Err(m) => Err(m.as_str()),
    }
}
