//! The endpoint half of an evaluation: a metric rule's several named queries, and the success and
//! latency gauges an endpoint rule may declare (`up`, `latency`).
//!
//! A rule on an endpoint succeeds or fails as a whole: when any request or query fails, its
//! families are withdrawn (or follow `on_error`) and `up` reads 0, with no other series of the rule.
//! That is what makes "dtr_up 0 and nothing else" hold.

use std::time::Instant;

use crate::eval::cell::ResultSet;
use crate::eval::exposition::{Family, MetricType, Sample};
use crate::eval::metric;
use crate::rules::model::{EndpointRule, MetricRule, Rule};
use crate::source::{http, Fetch, FetchError, RowSink, Source};

use super::evaluate::{Outcome, Status};

/// Keeps each named query's result, failing past `max_rows` rows in all.
struct ByQuery {
    results: Vec<(String, ResultSet)>,
    max_rows: usize,
    rows: usize,
}

impl RowSink for ByQuery {
    fn query(&mut self, name: &str) {
        self.results.push((name.to_string(), ResultSet::default()));
    }

    fn columns(&mut self, names: Vec<String>) {
        if self.results.is_empty() {
            self.query("query");
        }
        if let Some((_, rs)) = self.results.last_mut() {
            rs.columns = names;
        }
    }

    fn row(&mut self, cells: Vec<crate::eval::cell::Cell>) -> Result<(), FetchError> {
        self.rows += 1;
        if self.rows > self.max_rows {
            return Err(FetchError::TooManyRows(self.max_rows));
        }
        match self.results.last_mut() {
            Some((_, rs)) if rs.columns.len() == cells.len() => {
                rs.rows.push(cells);
                Ok(())
            }
            _ => Err(FetchError::Query("the source returned a row whose length differs from the columns".into())),
        }
    }
}

/// One run of a metric rule on its endpoint: every request, then every query, then the families.
pub async fn evaluate_metric(
    rule: &Rule,
    m: &MetricRule,
    source: Result<&dyn Source, &str>,
    started: Instant,
) -> Outcome {
    let mut sink = ByQuery { results: Vec::new(), max_rows: rule.max_rows, rows: 0 };
    let mut sql = None;
    let fetched: Result<(), (Option<FetchError>, String)> = async {
        let source = source.map_err(|m| (None, m.to_string()))?;
        let work = http::work(rule).map_err(|m| (None, m))?;
        // What the status page shows as the rule's SQL: each named query as rendered.
        sql = Some(work.queries.iter().map(|(name, q)| format!("-- {name}\n{q}")).collect::<Vec<_>>().join("\n\n"));
        let no_render = |_: i64| Err::<String, String>("an endpoint rule renders its own queries".into());
        let fetch = Fetch { render: &no_render, bindings: rule.bindings(), timeout: rule.timeout, http: Some(&work) };
        source.fetch(fetch, &mut sink).await.map_err(|e| {
            let m = e.to_string();
            (Some(e), m)
        })
    }
    .await;
    let endpoint = rule.database.as_str();
    let (families, status, connect_failed) = match fetched {
        Ok(()) => {
            let result_of = |f: &crate::rules::model::MetricFamily| {
                let want = f.query.as_deref().or(sink.results.first().map(|(n, _)| n.as_str()));
                sink.results.iter().find(|(n, _)| Some(n.as_str()) == want).map(|(_, rs)| rs)
            };
            match metric::evaluate_queries(m, endpoint, result_of) {
                Ok(families) => (families, Status::Success, false),
                Err(msg) => (metric::failed(m, endpoint), Status::Error(msg), false),
            }
        }
        Err((Some(FetchError::Timeout(_)), _)) => (metric::failed(m, endpoint), Status::Timeout, false),
        Err((e, msg)) => (metric::failed(m, endpoint), Status::Error(msg), matches!(e, Some(FetchError::Connect(_)))),
    };
    let mut families = families;
    families.retain(|f| !f.samples.is_empty());
    Outcome {
        families,
        status,
        rows: sink.rows,
        duration: started.elapsed(),
        connect_failed,
        connect_failures: if connect_failed { vec![endpoint.to_string()] } else { Vec::new() },
        sql,
        targets: Default::default(),
    }
}

/// Adds the rule's own `up` and `latency` gauges to an outcome.
pub fn own_metrics(e: &EndpointRule, outcome: &mut Outcome) {
    let ok = outcome.status == Status::Success;
    if let Some(d) = &e.latency {
        if ok {
            let mut f = Family::new(&d.name, &d.help, MetricType::Gauge);
            f.samples.push(Sample { labels: Vec::new(), value: outcome.duration.as_secs_f64() });
            outcome.families.push(f);
        }
    }
    if let Some(d) = &e.up {
        let mut f = Family::new(&d.name, &d.help, MetricType::Gauge);
        f.samples.push(Sample { labels: Vec::new(), value: if ok { 1.0 } else { 0.0 } });
        outcome.families.push(f);
    }
}
