//! Rule tests on an endpoint: each named request is answered by its canned response, judged as a
//! real response is (status, `max_body_bytes`, then strict JSON in SQLite), and the rule's queries
//! run over them unchanged.
//!
//! The session holds no HTTP client: it is built from the endpoint's settings and the fixture
//! only, so it cannot open a socket or ask a proxy, whatever the endpoint's URL says.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tokio::time::Instant;

use super::{run_queries, sqlite, status_refused, too_large, work, Call, HttpSource};
use crate::rules::model::Endpoint;
use crate::secret::redact;
use crate::source::fixture::{Fixture, FixtureAnswer, FixtureResponse, TransportFailure};
use crate::source::seam::{Connections, Fetch, FetchError, FixtureSession, Reach, RowSink, Source, StatementCheck};

/// An endpoint whose requests are answered by a fixture.
pub(super) struct HttpFixture {
    endpoint: Arc<Endpoint>,
    secrets: Vec<String>,
    responses: Vec<FixtureResponse>,
}

impl std::fmt::Debug for HttpFixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpFixture").field("endpoint", &self.endpoint.name).finish_non_exhaustive()
    }
}

impl HttpSource {
    /// A session answering this endpoint's requests from `fixture`.
    pub(super) fn fixture_session(&self, fixture: &Fixture) -> Result<HttpFixture, FetchError> {
        // Tables are for SQL sources: a case may hold both for rules of both kinds.
        Ok(HttpFixture {
            endpoint: self.endpoint.clone(),
            secrets: self.secrets.clone(),
            responses: fixture.responses.clone(),
        })
    }
}

impl HttpFixture {
    fn scrub(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_string(), |out, s| redact(&out, s))
    }

    /// The canned answer to `call`, judged as [`HttpSource::get`] judges a real one.
    fn answer(&self, call: &Call) -> Result<sqlite::Response, FetchError> {
        let name = &call.name;
        let Some(response) = self.responses.iter().find(|r| &r.request == name) else {
            let known: Vec<&str> = self.responses.iter().map(|r| r.request.as_str()).collect();
            return Err(FetchError::Query(format!(
                "request '{name}' has no response in the fixture (it has: {}); add one under responses",
                known.join(", ")
            )));
        };
        match &response.answer {
            FixtureAnswer::Failure(TransportFailure::Timeout) => Err(FetchError::Timeout(self.endpoint.timeout)),
            FixtureAnswer::Failure(TransportFailure::Refused) => {
                Err(FetchError::Connect(format!("request '{name}': cannot connect: connection refused")))
            }
            FixtureAnswer::Reply(reply) => {
                let status = reqwest::StatusCode::from_u16(reply.status).map_err(|_| {
                    FetchError::Query(format!(
                        "request '{name}': the fixture's status {} is not an HTTP status; give 100 to 999",
                        reply.status
                    ))
                })?;
                if !status.is_success() {
                    return Err(status_refused(name, status));
                }
                if reply.body.len() > self.endpoint.max_body_bytes {
                    return Err(too_large(name, self.endpoint.max_body_bytes));
                }
                Ok(sqlite::Response { name: name.clone(), body: reply.body.clone() })
            }
        }
    }

    async fn fetch_fixture(&self, fetch: Fetch<'_>, sink: &mut dyn RowSink) -> Result<(), FetchError> {
        let deadline = Instant::now() + fetch.timeout;
        let work = work(fetch.rule)?;
        for (name, sql) in &work.queries {
            sink.statement(name, sql);
        }
        let responses = work.requests.iter().map(|c| self.answer(c)).collect::<Result<Vec<_>, _>>()?;
        run_queries(fetch, work.queries, responses, sink, deadline).await.map_err(|e| match e {
            FetchError::Query(m) => FetchError::Query(self.scrub(&m)),
            e => e,
        })
    }
}

impl Source for HttpFixture {
    fn name(&self) -> &str {
        &self.endpoint.name
    }

    fn fetch<'a>(&'a self, fetch: Fetch<'a>, sink: &'a mut dyn RowSink) -> BoxFuture<'a, Result<(), FetchError>> {
        self.fetch_fixture(fetch, sink).boxed()
    }

    fn prepare<'a>(&'a self, _fetch: Fetch<'a>) -> BoxFuture<'a, Result<Vec<StatementCheck>, FetchError>> {
        async { Ok(Vec::<StatementCheck>::new()) }.boxed()
    }

    fn reach(&self) -> Reach {
        Reach::Local
    }

    fn open_fixture<'a>(
        &'a self,
        _fixture: &'a Fixture,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<Box<dyn FixtureSession>, FetchError>> {
        crate::source::seam::nested_fixture_refused()
    }

    fn connections(&self) -> Connections {
        Connections::default()
    }

    fn close(&self) {}

    fn drain(&self, _limit: Duration) -> BoxFuture<'_, ()> {
        async {}.boxed()
    }
}

impl FixtureSession for HttpFixture {
    fn finish(self: Box<Self>) -> BoxFuture<'static, Result<(), FetchError>> {
        async { Ok(()) }.boxed()
    }
}
