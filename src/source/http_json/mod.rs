//! HTTP JSON endpoints as a source: a rule's requests are fetched concurrently, then its queries
//! run in SQLite over the responses ([`sqlite`]).
//!
//! The rule succeeds or fails as a whole: the first request that fails (refused, timed out, not
//! 2xx, not strict JSON, over `max_body_bytes`) fails the fetch and no query runs, exactly like a
//! failed PostgreSQL query. Every message names the request (and the HTTP status) and is scrubbed of
//! the endpoint's credentials; reqwest's errors are taken without their URL.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tokio::time::{timeout_at, Instant};

use super::fixture::Fixture;
use super::seam::{
    ColumnType, Connections, Fetch, FetchError, FixtureSession, Prepared, Reach, RowSink, Source, StatementCheck,
};
use crate::rules::model::{Auth, Endpoint, EndpointRule, Placement, Proxy, Rule};
use crate::rules::template;
use crate::secret::redact;

mod client;
mod fixture;
mod sqlite;

/// What one evaluation of a rule on an endpoint fetches and runs, its templates rendered.
#[derive(Debug, Clone)]
struct Work {
    pub requests: Vec<Call>,
    pub queries: Vec<(String, String)>,
}

/// One rendered request.
#[derive(Debug, Clone)]
struct Call {
    pub name: String,
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Option<String>,
}

/// What the rule makes this kind of source do: its requests and queries.
fn endpoint_rule(rule: &Rule) -> Result<&EndpointRule, FetchError> {
    match &rule.placement {
        Placement::Endpoint(e) => Ok(e),
        Placement::Databases(_) => Err(FetchError::Query("the rule is not on an endpoint".into())),
    }
}

/// Renders the requests and queries of `rule` (which must be on an endpoint).
fn work(rule: &Rule) -> Result<Work, FetchError> {
    let e = endpoint_rule(rule)?;
    let server = sqlite::identity();
    let render = |t: &str| template::render_text(rule, t, &server);
    let mut requests = Vec::with_capacity(e.requests.len());
    for r in &e.requests {
        let at = |m: String| format!("request '{}': the template does not render: {m}", r.name);
        requests.push(Call {
            name: r.name.clone(),
            method: r.method.clone(),
            path: render(&r.path).map_err(at).map_err(FetchError::Render)?,
            query: r
                .query
                .iter()
                .map(|(k, v)| Ok((k.clone(), render(v)?)))
                .collect::<Result<_, String>>()
                .map_err(at)
                .map_err(FetchError::Render)?,
            body: r.body.as_deref().map(render).transpose().map_err(at).map_err(FetchError::Render)?,
        });
    }
    let queries = e
        .queries
        .iter()
        .map(|(n, q)| {
            Ok((n.clone(), render(q).map_err(|m| format!("query '{n}': the template does not render: {m}"))?))
        })
        .collect::<Result<_, String>>()
        .map_err(FetchError::Render)?;
    Ok(Work { requests, queries })
}

pub struct HttpSource {
    endpoint: Arc<Endpoint>,
    client: reqwest::Client,
    secrets: Vec<String>,
}

impl std::fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSource").field("endpoint", &self.endpoint.name).finish_non_exhaustive()
    }
}

impl HttpSource {
    pub fn new(endpoint: Arc<Endpoint>) -> Result<HttpSource, String> {
        let client = client::build(&endpoint).map_err(|m| format!("endpoint '{}': {m}", endpoint.name))?;
        let mut secrets: Vec<String> = endpoint.headers.iter().map(|(_, v)| v.expose().to_string()).collect();
        match &endpoint.auth {
            Some(Auth::Basic { password, .. }) => secrets.push(password.expose().to_string()),
            Some(Auth::Bearer(t)) => secrets.push(t.expose().to_string()),
            None => {}
        }
        if let Proxy::Url(p) = &endpoint.proxy {
            secrets.push(p.expose().to_string());
        }
        secrets.retain(|s| s.len() >= 3);
        Ok(HttpSource { endpoint, client, secrets })
    }

    fn scrub(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_string(), |out, s| redact(&out, s))
    }

    /// One request's body, limited while it streams (reqwest has already decompressed it), held once.
    async fn get(&self, call: &Call) -> Result<sqlite::Response, FetchError> {
        let name = &call.name;
        let url = format!("{}{}", self.endpoint.url.trim_end_matches('/'), call.path);
        let method = reqwest::Method::from_bytes(call.method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut req = self.client.request(method, &url);
        if !call.query.is_empty() {
            req = req.query(&call.query);
        }
        if let Some(b) = &call.body {
            req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(b.clone());
        }
        req = match &self.endpoint.auth {
            Some(Auth::Basic { username, password }) => req.basic_auth(username, Some(password.expose())),
            Some(Auth::Bearer(t)) => req.bearer_auth(t.expose()),
            None => req,
        };
        let failed = |e: reqwest::Error| {
            let msg = format!("request '{name}': {}", chain(&e));
            if e.is_timeout() {
                FetchError::Timeout(self.endpoint.timeout)
            } else if e.is_connect() {
                FetchError::Connect(msg)
            } else {
                FetchError::Query(msg)
            }
        };
        let mut resp = req.send().await.map_err(failed)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(status_refused(name, status));
        }
        let limit = self.endpoint.max_body_bytes;
        let too_big = || too_large(name, limit);
        let announced = resp.content_length().unwrap_or(0);
        if announced > limit as u64 {
            return Err(too_big());
        }
        // Sized once when the length is announced (at most `limit`), with room for the NUL that SQLite
        // reads it with: no growth, no copy.
        let mut body = Vec::with_capacity(announced as usize + 1);
        while let Some(chunk) = resp.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > limit {
                return Err(too_big());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(sqlite::Response { name: name.clone(), body })
    }

    async fn fetch_into(&self, fetch: Fetch<'_>, sink: &mut dyn RowSink) -> Result<(), FetchError> {
        let deadline = Instant::now() + fetch.timeout;
        let work = work(fetch.rule)?;
        for (name, sql) in &work.queries {
            sink.statement(name, sql);
        }
        let gets = futures_util::future::try_join_all(work.requests.iter().map(|c| self.get(c)));
        let responses = match timeout_at(deadline, gets).await {
            Err(_) => return Err(FetchError::Timeout(fetch.timeout)),
            Ok(Err(FetchError::Connect(m))) => return Err(FetchError::Connect(self.scrub(&m))),
            Ok(Err(FetchError::Query(m))) => return Err(FetchError::Query(self.scrub(&m))),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(r)) => r,
        };
        run_queries(fetch, work.queries, responses, sink, deadline).await.map_err(|e| match e {
            FetchError::Query(m) => FetchError::Query(self.scrub(&m)),
            e => e,
        })
    }
}

/// Runs the rule's queries in SQLite over `responses`, pushing their rows into `sink` by `deadline`:
/// the same for fetched and for canned responses. Messages are not yet scrubbed.
async fn run_queries(
    fetch: Fetch<'_>,
    queries: Vec<(String, String)>,
    responses: Vec<sqlite::Response>,
    sink: &mut dyn RowSink,
    deadline: Instant,
) -> Result<(), FetchError> {
    let bindings = fetch.rule.bindings();
    let (labels, targets) = (bindings.labels.to_vec(), bindings.targets.to_vec());
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Msg>(256);
    let blocking = tokio::task::spawn_blocking(move || {
        let mut db = match sqlite::open(&labels, &targets) {
            Ok(db) => db,
            Err(m) => return Err(m),
        };
        if tx.blocking_send(Msg::Handle(db.interrupt_handle())).is_err() {
            return Ok(());
        }
        for r in responses {
            db.bind_response(r)?;
        }
        db.run(&queries, |e| tx.blocking_send(Msg::Emit(e)).is_ok())
    });
    let mut handle = None;
    let mut outcome = Ok(());
    loop {
        match timeout_at(deadline, rx.recv()).await {
            Err(_) => {
                outcome = Err(FetchError::Timeout(fetch.timeout));
                break;
            }
            Ok(None) => break,
            Ok(Some(Msg::Handle(h))) => handle = Some(h),
            Ok(Some(Msg::Emit(sqlite::Emit::Query(q)))) => sink.query(&q),
            Ok(Some(Msg::Emit(sqlite::Emit::Columns(c)))) => sink.columns(c),
            Ok(Some(Msg::Emit(sqlite::Emit::Row(r)))) => {
                if let Err(e) = sink.row(r) {
                    outcome = Err(e);
                    break;
                }
            }
        }
    }
    if outcome.is_err() {
        if let Some(h) = &handle {
            h.interrupt();
        }
        drop(rx);
        return outcome;
    }
    match blocking.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(m)) => Err(FetchError::Query(m)),
        Err(e) => Err(FetchError::Query(format!("the SQLite task failed: {e}"))),
    }
}

/// Why a response with a status other than 2xx fails the fetch.
fn status_refused(name: &str, status: reqwest::StatusCode) -> FetchError {
    let why = if status.is_redirection() { " (a redirect not followed: another host, with credentials)" } else { "" };
    FetchError::Query(format!("request '{name}': HTTP {status}{why}"))
}

/// Why a body over `max_body_bytes` fails the fetch.
fn too_large(name: &str, limit: usize) -> FetchError {
    FetchError::Query(format!("request '{name}': the response is larger than max_body_bytes ({limit})"))
}

/// One query of `rule` prepared in an empty SQLite.
fn prepare_offline(rule: &Rule, text: &str, requests: &[String], labels: &[String]) -> Result<Prepared, FetchError> {
    let sql = template::render_text(rule, text, &sqlite::identity()).map_err(FetchError::Render)?;
    let columns = sqlite::prepare(&sql, requests, labels).map_err(|m| FetchError::Query(format!("SQLite: {m}")))?;
    Ok(Prepared {
        cast_to_text: sqlite_cast_to_text,
        sql,
        binding_problems: Vec::new(),
        columns: columns.into_iter().map(|c| (c, ColumnType::Unknown)).collect(),
    })
}

enum Msg {
    Handle(rusqlite::InterruptHandle),
    Emit(sqlite::Emit),
}

/// An error and its causes, in one line, without the URL (it may carry a token in its query).
fn chain(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    let head = if e.is_connect() { "cannot connect".to_string() } else { "failed".to_string() };
    parts.dedup();
    if parts.is_empty() {
        head
    } else {
        format!("{head}: {}", parts.join(": "))
    }
}

impl Source for HttpSource {
    fn name(&self) -> &str {
        &self.endpoint.name
    }

    fn fetch<'a>(&'a self, fetch: Fetch<'a>, sink: &'a mut dyn RowSink) -> BoxFuture<'a, Result<(), FetchError>> {
        self.fetch_into(fetch, sink).boxed()
    }

    /// Prepares every query of the rule in an empty SQLite, with the rule's requests as `:name`
    /// parameters and its `targets` table: no request is made.
    fn prepare<'a>(&'a self, fetch: Fetch<'a>) -> BoxFuture<'a, Result<Vec<StatementCheck>, FetchError>> {
        let checks = endpoint_rule(fetch.rule).map(|e| {
            let requests: Vec<String> = e.requests.iter().map(|r| r.name.clone()).collect();
            let labels = fetch.rule.bindings().labels;
            e.queries
                .iter()
                .map(|(name, text)| StatementCheck {
                    query: name.clone(),
                    result: prepare_offline(fetch.rule, text, &requests, labels),
                })
                .collect()
        });
        async move { checks }.boxed()
    }

    fn reach(&self) -> Reach {
        Reach::Local
    }

    fn open_fixture<'a>(
        &'a self,
        fixture: &'a Fixture,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<Box<dyn FixtureSession>, FetchError>> {
        let session = self.fixture_session(fixture).map(|s| Box::new(s) as Box<dyn FixtureSession>);
        async move { session }.boxed()
    }

    fn connections(&self) -> Connections {
        Connections::default()
    }

    fn close(&self) {}

    fn drain(&self, _limit: Duration) -> BoxFuture<'_, ()> {
        async {}.boxed()
    }
}

/// SQLite's cast of `column` to text, for messages.
fn sqlite_cast_to_text(column: &str) -> String {
    format!("CAST({column} AS TEXT)")
}
