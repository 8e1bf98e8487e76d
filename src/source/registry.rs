//! The one place that knows every kind of source: which kind serves a database or an endpoint of
//! the rules file, and how it is built. Adding a kind means a folder under `source/`, its
//! configuration under `rules/`, and an arm here; nothing else names a kind.

use std::sync::Arc;

use super::seam::{PoolSettings, Reach, Source};
use crate::rules::model::{Database, Endpoint, Engine, RuleSet};

/// What a source is built from: compared on reload to keep a source whose origin is unchanged.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Origin {
    Database(Arc<Database>, PoolSettings),
    Endpoint(Arc<Endpoint>),
}

impl Origin {
    /// Every source `set` declares, by name.
    pub(super) fn all(set: &RuleSet) -> Vec<(String, Origin)> {
        let databases = set.databases.iter().map(|(name, db)| {
            // statement_timeout backstops the slowest rule; backoff stays below the shortest interval.
            let settings =
                PoolSettings { statement_timeout: set.statement_timeout(name), max_backoff: set.max_backoff(name) };
            (name.clone(), Origin::Database(db.clone(), settings))
        });
        let endpoints = set.endpoints.iter().map(|(name, ep)| (name.clone(), Origin::Endpoint(ep.clone())));
        databases.chain(endpoints).collect()
    }

    /// What the rules file calls it, for messages.
    pub(super) fn noun(&self) -> &'static str {
        match self {
            Origin::Database(..) => "database",
            Origin::Endpoint(_) => "endpoint",
        }
    }
}

/// Where the kind that serves `origin` prepares statements, known before it is built.
pub(super) fn reach(origin: &Origin) -> Reach {
    match origin {
        Origin::Database(..) => Reach::Server,
        Origin::Endpoint(_) => Reach::Local,
    }
}

/// Builds the source of `origin`, choosing its kind.
pub(super) fn build(origin: &Origin) -> Result<Box<dyn Source>, String> {
    match origin {
        Origin::Database(db, settings) => match db.engine {
            Engine::Postgres => {
                super::postgres::PgSource::new(db.clone(), *settings).map(|s| Box::new(s) as Box<dyn Source>)
            }
            Engine::MySql => {
                super::mysql::MySqlSource::new(db.clone(), *settings).map(|s| Box::new(s) as Box<dyn Source>)
            }
        },
        Origin::Endpoint(ep) => super::http_json::HttpSource::new(ep.clone()).map(|s| Box::new(s) as Box<dyn Source>),
    }
}
