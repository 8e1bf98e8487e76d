//! Sources: where a rule's rows come from, behind one seam ([`seam`]) that every kind implements.
//!
//! A source is the only place that does I/O for a rule. Each kind is a folder here: `postgres`
//! (PostgreSQL), `mysql` (MySQL and MariaDB), `http_json` (JSON over HTTP queried in an embedded
//! SQLite). What the kinds with a server share is beside them: `backoff` (after connection
//! failures) and `credentials` (`password_file`, `password_command`, scrubbing). Nothing outside this
//! folder names a kind: the one place that picks a kind for a database or an endpoint of the rules
//! file is `registry`, and [`Sources`] builds every source through it. Decisions the seam makes for
//! every kind:
//!
//! - **Each kind renders its own statements.** A fetch hands the source the whole
//!   `Rule`: the kind renders its SQL (or requests) with what only it knows, its server's
//!   [`ServerIdentity`] (flavour and version, learnt once per new connection into a [`ServerSlot`];
//!   the database's assumed identity until then), binds the targets its own way and announces every
//!   statement as rendered ([`RowSink::statement`]).
//! - **Targets are bound as a table, not as arrays.** A rule binds
//!   [`Bindings`](crate::rules::model::Bindings): one column per label, one row per target.
//!   PostgreSQL passes each column as a `text[]` parameter (`$1`, `$2`, …); MySQL passes the table
//!   as one JSON parameter that the query opens with `JSON_TABLE`; SQLite loads the same table as a
//!   temporary table `targets`.
//! - **Rows stream.** `fetch` pushes each decoded row into a [`RowSink`] as it arrives and never
//!   holds the result itself, so an evaluation that folds rows as they come needs no memory for the
//!   whole result.
//! - **Prepare tells what the source knows.** [`Prepared`] gives each result column's name with a
//!   [`ColumnType`] that may be [`ColumnType::Unknown`] (SQLite knows names but no types before it
//!   runs a statement), and what the source cannot bind, worded by the kind. [`Reach`] says whether
//!   preparing needs a server (`--check-rules --db`) or not.
//! - **Plans are judged by their kind.** `--explain` asks [`Source::explain`] for warnings: a plan's
//!   shape is the engine's own.
//! - **Sources may block.** The seam is async and every method returns a boxed future, so a kind
//!   whose library blocks runs its work off the runtime threads inside its own future.
//!
//! Every message a source returns is scrubbed of its credentials.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::rules::model::{Rule, RuleSet};
use registry::Origin;

mod backoff;
mod credentials;
pub mod fixture;
mod http_json;
mod mysql;
mod postgres;
mod registry;
pub mod seam;
pub mod tls;

pub use fixture::*;
pub use seam::*;

/// A source, or why none could be built (a bad setting fails that source's rules only).
pub type SourceSlot = Arc<Result<Box<dyn Source>, String>>;

/// The sources of a rule set, one per database and endpoint, built the one way that the
/// scheduler, `--once` and `--check-rules` all use (the kinds are chosen in `registry`).
#[derive(Default)]
pub struct Sources {
    /// Each source by name, with what it was built from (to keep it across a reload that changes
    /// neither its configuration nor its settings).
    slots: HashMap<String, (Origin, SourceSlot)>,
}

impl Sources {
    /// Sources for every database and endpoint of `set`. A source of `previous` built from the same
    /// origin is kept (its connections live on); the others of `previous` are closed.
    pub fn build(set: &RuleSet, previous: Sources) -> Sources {
        Sources::build_from(Origin::all(set), previous)
    }

    /// Sources of `set` that `reach` allows: every one for [`Reach::Server`], only those that need
    /// no server for [`Reach::Local`] (`--check-rules` without `--db` builds no pool).
    pub fn build_reaching(set: &RuleSet, reach: Reach) -> Sources {
        let origins =
            Origin::all(set).into_iter().filter(|(_, o)| reach == Reach::Server || registry::reach(o) == reach);
        Sources::build_from(origins.collect(), Sources::default())
    }

    fn build_from(origins: Vec<(String, Origin)>, mut previous: Sources) -> Sources {
        let mut slots = HashMap::new();
        for (name, origin) in origins {
            let slot = match previous.slots.remove(&name) {
                Some((old, slot)) if old == origin => slot,
                old => {
                    if let Some((_, slot)) = old {
                        close(&slot);
                    }
                    let built = registry::build(&origin);
                    if let Err(msg) = &built {
                        tracing::error!(source = %name, error = %msg, "cannot set up {}", origin.noun());
                    }
                    Arc::new(built)
                }
            };
            slots.insert(name, (origin, slot));
        }
        previous.close();
        Sources { slots }
    }

    /// The source called `name`, or why there is none, worded once for every caller.
    pub fn slot(&self, name: &str) -> SourceSlot {
        match self.slots.get(name) {
            Some((_, slot)) => slot.clone(),
            None => Arc::new(Err(format!("database '{name}' is not declared, so it has no connection pool"))),
        }
    }

    /// The source called `name` as built, or `None` when none was built under that name.
    pub fn built(&self, name: &str) -> Option<SourceSlot> {
        self.slots.get(name).map(|(_, slot)| slot.clone())
    }

    /// The slots of `rule`'s sources, in [`crate::rules::model::Placement::sources`] order.
    pub fn slots_of(&self, rule: &Rule) -> Vec<SourceSlot> {
        rule.placement.sources().map(|name| self.slot(name)).collect()
    }

    /// Closes every source.
    pub fn close(&mut self) {
        for (_, (_, slot)) in self.slots.drain() {
            close(&slot);
        }
    }

    /// Closes every source and waits (at most `limit` each) for their cancel requests.
    pub async fn shut_down(&mut self, limit: Duration) {
        for (_, (_, slot)) in self.slots.drain() {
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
