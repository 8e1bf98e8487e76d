//! What a rule test (`--test-rules`) puts in place of a source's real data, and the session that
//! serves it: the shared part of [`Source::open_fixture`](super::Source::open_fixture).
//!
//! A test must run the rule's real statements through the real evaluation, so the fixture is handed
//! to the kind of source and the kind decides how to serve it: a SQL database creates temporary
//! tables that shadow the real ones inside a transaction that is never committed; an endpoint
//! answers each named request with its canned response and opens no socket at all. The session is
//! itself a [`Source`](super::Source), so `run::evaluate` takes it exactly as it takes a pooled source.
//!
//! Every value here is concrete: relative times (`-2h`) were resolved by the caller, so a kind
//! never needs a clock.

/// The rows and responses of one evaluation of a rule test.
#[derive(Debug, Clone, Default)]
pub struct Fixture {
    /// Tables that shadow the real tables of the same name (SQL sources).
    pub tables: Vec<FixtureTable>,
    /// The answer to each named request of a rule (endpoints).
    pub responses: Vec<FixtureResponse>,
}

/// One table of a fixture: created as a temporary table with these columns, holding these rows.
#[derive(Debug, Clone)]
pub struct FixtureTable {
    /// The unqualified name, as the rule's SQL writes it.
    pub name: String,
    pub columns: Vec<FixtureColumn>,
    /// Each row, one JSON value per column in `columns` order (`null` is SQL NULL; text is read by
    /// the column type's input function, so `'2026-01-01T00:00:00Z'` fills a `timestamptz`).
    pub rows: Vec<Vec<serde_json::Value>>,
}

/// A column of a fixture table.
#[derive(Debug, Clone)]
pub struct FixtureColumn {
    pub name: String,
    /// The SQL type, as the database writes it (`integer`, `timestamptz`, `jsonb`, `text[]`).
    pub sql_type: String,
}

/// The canned answer to one named request of an endpoint rule.
#[derive(Debug, Clone)]
pub struct FixtureResponse {
    /// The request's name in the rule's `requests:`.
    pub request: String,
    pub answer: FixtureAnswer,
}

/// What a request gets in a rule test.
#[derive(Debug, Clone)]
pub enum FixtureAnswer {
    /// An HTTP response: judged as a real one would be (status, `max_body_bytes`, strict JSON).
    Reply(CannedReply),
    /// The request never got a response.
    Failure(TransportFailure),
}

/// A canned HTTP response.
#[derive(Debug, Clone)]
pub struct CannedReply {
    pub status: u16,
    /// Kept for the record; the source reads no response header today.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A request that fails before any response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportFailure {
    /// The endpoint's timeout passed.
    Timeout,
    /// The connection was refused.
    Refused,
}
