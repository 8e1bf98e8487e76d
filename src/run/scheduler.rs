//! Runs every rule on its interval, each in its own task, and applies new rule sets (reload).
//!
//! A rule is evaluated at start (so `/-/ready` waits for nothing more) and then once per interval,
//! at a stable offset within it ([`offset`], a hash of the rule's name on the wall clock's grid of
//! that interval): rules that share an interval spread over it instead of all querying at once.
//! Its evaluations run one after another in its task, so a rule never overlaps itself; rules run
//! concurrently with each other, limited per database by the pool size. Applying a new rule set
//! keeps the tasks of unchanged rules (their schedule and series carry on), restarts changed ones
//! and stops removed ones. Every finished evaluation is published as one event
//! ([`crate::publish::event::RuleEvent`]).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::publish::event::{Publisher, RuleEvent};
use crate::publish::self_metrics::SourceUse;
use crate::publish::snapshot::Rendered;
use crate::rules::model::{Rule, RuleSet};
use crate::run::evaluate as evaluation;
use crate::run::watchdog::{self, Heartbeat};
use crate::source::{as_source, SourceSlot, Sources};

struct RuleTask {
    rule: Arc<Rule>,
    /// One slot per source of the rule's placement, in that order.
    sources: Vec<SourceSlot>,
    cancel: CancellationToken,
    handle: JoinHandle<()>,
    watchdog: JoinHandle<()>,
}

impl RuleTask {
    /// Stops the task and waits until it has: after this it can no longer publish a block or
    /// touch the rule's self-metrics (so a replaced or removed rule cannot come back).
    async fn stop(self) {
        self.cancel.cancel();
        self.handle.abort();
        self.watchdog.abort();
        let _ = self.handle.await;
        let _ = self.watchdog.await;
    }
}

#[derive(Default)]
struct State {
    sources: Sources,
    tasks: BTreeMap<String, RuleTask>,
}

/// Owns the rule tasks and the pools.
pub struct Scheduler {
    publisher: Publisher,
    state: Mutex<State>,
}

impl Scheduler {
    pub fn new(publisher: Publisher) -> Scheduler {
        Scheduler { publisher, state: Mutex::new(State::default()) }
    }

    /// Makes `rules` the running set. Must be called within a tokio runtime.
    pub async fn apply(&self, rules: &RuleSet) {
        let mut state = self.state.lock().await;

        // Sources: one whose database and settings are unchanged is kept, else built anew.
        state.sources = Sources::build(rules, std::mem::take(&mut state.sources));

        self.publisher.snapshot.set_rules(rules.rules.iter().map(|r| r.name.clone()).collect());
        self.publisher.status.set_rules(rules);

        // Every changed rule is stopped and its block emptied before any new task runs: a family that
        // moves from one rule to another must never be served twice (the old rule's last block
        // beside the new rule's first).
        let mut old_tasks = std::mem::take(&mut state.tasks);
        let mut to_spawn = Vec::new();
        for rule in &rules.rules {
            let slots = state.sources.slots_of(rule);
            if let Some(task) = old_tasks.remove(&rule.name) {
                let same_sources = task.sources.len() == slots.len()
                    && task.sources.iter().zip(&slots).all(|(a, b)| Arc::ptr_eq(a, b));
                if task.rule == *rule && same_sources {
                    state.tasks.insert(rule.name.clone(), task);
                    continue;
                }
                task.stop().await;
                self.publisher.snapshot.update(&rule.name, Rendered::default());
            }
            to_spawn.push((rule.clone(), slots));
        }
        for (name, task) in old_tasks {
            task.stop().await;
            self.publisher.metrics.forget_rule(&name);
        }
        for (rule, slots) in to_spawn {
            let task = self.spawn(rule.clone(), slots);
            state.tasks.insert(rule.name.clone(), task);
        }
    }

    fn spawn(&self, rule: Arc<Rule>, sources: Vec<SourceSlot>) -> RuleTask {
        let cancel = CancellationToken::new();
        let heartbeat = Heartbeat::new();
        let task = RuleTaskCtx {
            rule: rule.clone(),
            sources: sources.clone(),
            publisher: self.publisher.clone(),
            cancel: cancel.clone(),
            heartbeat: heartbeat.clone(),
        };
        let handle = tokio::spawn(rule_loop(task));
        let watchdog = tokio::spawn(watchdog::watch(rule.clone(), heartbeat, self.publisher.clone()));
        RuleTask { rule, sources, cancel, handle, watchdog }
    }

    /// Stops every rule task (waiting at most `grace`) and closes the pools.
    pub async fn shutdown(&self, grace: Duration) {
        let mut state = self.state.lock().await;
        let tasks = std::mem::take(&mut state.tasks);
        for task in tasks.values() {
            task.cancel.cancel();
            task.watchdog.abort();
        }
        let _ = tokio::time::timeout(grace, async {
            for (_, task) in tasks {
                let _ = task.handle.await;
            }
        })
        .await;
        state.sources.shut_down(Duration::from_secs(1)).await;
    }
}

/// Where within each `interval` the rule `name` runs: stable (the same for a name across restarts
/// and versions, by FNV-1a and a mixer rather than std's unspecified hasher), in `[0, interval)`,
/// and spread evenly for different names.
pub fn offset(name: &str, interval: Duration) -> Duration {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    // splitmix64's finalizer: FNV's low bits alone spread names that differ in one byte poorly.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    let nanos = interval.as_nanos().max(1);
    Duration::from_nanos((u128::from(h) % nanos) as u64)
}

/// The first instant at or after `earliest` whose wall-clock time is `offset` past a multiple of
/// `interval` (since the Unix epoch), so a rule's slots are the same across restarts.
fn next_slot(earliest: Instant, interval: Duration, offset: Duration) -> Instant {
    let (at, unix) = anchor();
    let period = interval.as_nanos().max(1);
    let wall = match earliest.checked_duration_since(at) {
        Some(after) => unix + after.as_nanos(),
        None => unix.saturating_sub(at.duration_since(earliest).as_nanos()),
    };
    let wait = (offset.as_nanos() % period + period - wall % period) % period;
    earliest + Duration::from_nanos(wait as u64)
}

/// An instant and its wall-clock time (ns since the Unix epoch), taken once: the monotonic clock
/// schedules, the wall clock only places the grid.
fn anchor() -> (Instant, u128) {
    static ANCHOR: OnceLock<(Instant, u128)> = OnceLock::new();
    *ANCHOR.get_or_init(|| {
        let unix = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        (Instant::now(), unix)
    })
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

/// What a rule's task works with.
struct RuleTaskCtx {
    rule: Arc<Rule>,
    /// One slot per source of the rule's placement, in that order.
    sources: Vec<SourceSlot>,
    publisher: Publisher,
    cancel: CancellationToken,
    heartbeat: Arc<Heartbeat>,
}

impl RuleTaskCtx {
    /// Each source's connections now.
    fn source_use(&self) -> Vec<SourceUse> {
        self.sources
            .iter()
            .filter_map(|s| s.as_ref().as_ref().ok())
            .map(|src| {
                let c = src.connections();
                SourceUse { name: src.name().to_string(), open: c.open, in_use: c.in_use }
            })
            .collect()
    }
}

/// Evaluates the rule at start, then at its slot of each interval, publishing every evaluation,
/// until cancelled.
async fn rule_loop(ctx: RuleTaskCtx) {
    let rule = &ctx.rule;
    let mut next = Instant::now();
    let mut memory = evaluation::Memory::default();
    let mut first_evaluation = true;
    ctx.publisher.metrics.rule_interval.with_label_values(&[&rule.name]).set(rule.interval.as_secs_f64());
    loop {
        let srcs: Vec<_> = ctx.sources.iter().map(as_source).collect();
        // A panic is a bug, but it must not freeze this rule's series at their last values.
        let evaluation = AssertUnwindSafe(evaluation::evaluate_remembering(rule, &srcs, &mut memory)).catch_unwind();
        let outcome = tokio::select! {
            o = evaluation => o.unwrap_or_else(|panic| evaluation::panicked(rule, &panic_message(&*panic))),
            _ = ctx.cancel.cancelled() => return,
        };
        // The rule's next slot at least half an interval after this run's start (one interval in
        // the steady state); after an overrun, the next slot from now, so runs never bunch.
        next =
            next_slot((next + rule.interval / 2).max(Instant::now()), rule.interval, offset(&rule.name, rule.interval));
        let next_in = next.saturating_duration_since(Instant::now());
        let event = RuleEvent::Evaluated { rule, outcome, next_in, sources: ctx.source_use() };
        ctx.heartbeat.finished(&ctx.publisher, event);
        // What the evaluation and the replaced snapshot freed goes back now, not at the peak of the next.
        crate::resident::release_freed_heap();
        if first_evaluation {
            // Connecting and preparing ran once: their code need not stay resident (`crate::resident`).
            crate::resident::drop_read_only_image_pages();
            first_evaluation = false;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = ctx.cancel.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_stable_within_the_interval_and_spread() {
        let minute = Duration::from_secs(60);
        // Stable: a fixed value, not merely the same twice in one process.
        assert_eq!(offset("kanary", minute), offset("kanary", minute));
        assert_eq!(offset("kanary", minute).as_nanos(), 11_474_470_049);
        // Spread: 600 similar names over 10 buckets of the minute, none far from the mean of 60.
        let mut buckets = [0usize; 10];
        for i in 0..600 {
            let o = offset(&format!("rule_{i}"), minute);
            assert!(o < minute);
            buckets[(o.as_secs() / 6) as usize] += 1;
        }
        assert!(buckets.iter().all(|&n| (35..=85).contains(&n)), "{buckets:?}");
        assert!(offset("x", Duration::from_nanos(1)).is_zero());
    }

    #[test]
    fn slots_fall_on_the_offset_of_the_wall_clock_grid() {
        let interval = Duration::from_secs(10);
        let (at, unix) = anchor();
        let now = Instant::now();
        let slot = next_slot(now, interval, Duration::from_secs(3));
        assert!(slot >= now && slot < now + interval);
        // The slot's wall-clock time is 3 s past a multiple of 10 s (the anchor ties the clocks).
        let wall = unix + (slot - at).as_nanos();
        assert_eq!(wall % interval.as_nanos(), Duration::from_secs(3).as_nanos());
        // The next one is exactly one interval on.
        assert_eq!(next_slot(slot + Duration::from_nanos(1), interval, Duration::from_secs(3)), slot + interval);
        assert_eq!(next_slot(slot, interval, Duration::from_secs(3)), slot);
    }
}
