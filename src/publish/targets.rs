//! A signal's judged targets, packed for the status page.
//!
//! The page must list every target, but keeping each evaluation's `TargetResult`s (a `Vec` and a
//! `String` per label value, a state per target) would cost over 100 bytes a target for as long as
//! the rule runs: several MiB at 100k series, against a 64 MiB budget. Packed, a target costs its
//! label bytes, 4 bytes per label value and 1 byte of state; a detail is kept for targets in error only.

use crate::eval::signal::{TargetResult, TargetState};
use crate::rules::model::Failure;

/// Targets per state; `failed` is indexed like [`Failure::ALL`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub up: usize,
    pub down: usize,
    pub failed: [usize; Failure::ALL.len()],
}

impl Counts {
    pub fn errors(&self) -> usize {
        self.failed.iter().sum()
    }
}

const UP: u8 = 0;
const DOWN: u8 = 1;
const FAILED: u8 = 2;

/// Every target of one evaluation, in evaluation order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Targets {
    /// Labels per target.
    width: usize,
    /// Every label value, one after another.
    text: String,
    /// Where each label value ends in `text`.
    ends: Vec<u32>,
    /// One per target: `UP`, `DOWN` or `FAILED`.
    states: Vec<u8>,
    /// The targets in error: index, failure, detail.
    errors: Vec<(u32, Failure, Box<str>)>,
    pub counts: Counts,
}

/// One target as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Target<'a> {
    pub labels: Vec<&'a str>,
    /// `None` for up; `Some` with the failure for a target in error.
    pub state: TargetView<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TargetView<'a> {
    Up,
    Down,
    Failed(Failure, &'a str),
}

impl TargetView<'_> {
    /// `up`, `down` or the failure's key, as the API names states.
    pub fn name(&self) -> &'static str {
        match self {
            TargetView::Up => "up",
            TargetView::Down => "down",
            TargetView::Failed(f, _) => f.key(),
        }
    }
}

impl Targets {
    /// Packs `results`, each with `width` label values.
    pub fn pack(width: usize, results: &[TargetResult]) -> Targets {
        let mut t = Targets {
            width,
            text: String::with_capacity(results.iter().flat_map(|r| &r.labels).map(String::len).sum()),
            ends: Vec::with_capacity(results.len() * width),
            states: Vec::with_capacity(results.len()),
            ..Targets::default()
        };
        for (i, r) in results.iter().enumerate() {
            for v in r.labels.iter().chain(std::iter::repeat(&String::new())).take(width) {
                t.text.push_str(v);
                t.ends.push(t.text.len() as u32);
            }
            t.states.push(match &r.state {
                TargetState::Up => {
                    t.counts.up += 1;
                    UP
                }
                TargetState::Down => {
                    t.counts.down += 1;
                    DOWN
                }
                TargetState::Failed { failure, detail } => {
                    t.counts.failed[*failure as usize] += 1;
                    t.errors.push((i as u32, *failure, detail.as_str().into()));
                    FAILED
                }
            });
        }
        t
    }

    pub fn len(&self) -> usize {
        self.states.len()
    }

    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// The heap this holds, in bytes (details' own bytes included).
    pub fn heap_bytes(&self) -> usize {
        self.text.capacity()
            + self.ends.capacity() * 4
            + self.states.capacity()
            + self.errors.capacity() * std::mem::size_of::<(u32, Failure, Box<str>)>()
            + self.errors.iter().map(|e| e.2.len()).sum::<usize>()
    }

    /// Every target's label values, in evaluation order, unpacked.
    pub fn label_sets(&self) -> Vec<Vec<String>> {
        (0..self.len()).map(|i| self.labels(i).into_iter().map(str::to_string).collect()).collect()
    }

    fn labels(&self, i: usize) -> Vec<&str> {
        (i * self.width..(i + 1) * self.width)
            .map(|k| {
                let start = if k == 0 { 0 } else { self.ends[k - 1] as usize };
                &self.text[start..self.ends[k] as usize]
            })
            .collect()
    }

    /// The targets in error, then those down, then those up; each group in evaluation order.
    pub fn errors_first(&self) -> impl Iterator<Item = Target<'_>> + '_ {
        let errors = self
            .errors
            .iter()
            .map(|(i, f, d)| Target { labels: self.labels(*i as usize), state: TargetView::Failed(*f, d) });
        let with = move |state: u8, view: TargetView<'static>| {
            self.states
                .iter()
                .enumerate()
                .filter(move |(_, s)| **s == state)
                .map(move |(i, _)| Target { labels: self.labels(i), state: view })
        };
        errors.chain(with(DOWN, TargetView::Down)).chain(with(UP, TargetView::Up))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_benchmarks_100k_series_cost_about_1_6_mib() {
        // The bench's rule: 33,333 targets of two labels, 100k series; a tenth of them in error.
        let results: Vec<TargetResult> = (0..33_333)
            .map(|i| TargetResult {
                labels: vec![format!("cluster-{i:06}"), "container-single-arch".into()],
                state: if i % 10 == 0 {
                    TargetState::Failed {
                        failure: Failure::Stale,
                        detail: "newest ended 4h 40m ago, more than 3h".into(),
                    }
                } else {
                    TargetState::Up
                },
            })
            .collect();
        let packed = Targets::pack(2, &results);
        let bytes = packed.heap_bytes();
        assert!(bytes < 1_800_000, "{bytes} bytes");
        assert_eq!(
            packed.errors_first().next().map(|t| t.labels),
            Some(vec!["cluster-000000", "container-single-arch"])
        );
    }

    #[test]
    fn packed_targets_read_back_errors_first() {
        let r = |labels: &[&str], state| TargetResult { labels: labels.iter().map(|s| s.to_string()).collect(), state };
        let results = vec![
            r(&["a", "x"], TargetState::Up),
            r(&["", "é"], TargetState::Down),
            r(&["c", "z"], TargetState::Failed { failure: Failure::Stale, detail: "old".into() }),
            r(&["d", ""], TargetState::Up),
        ];
        let t = Targets::pack(2, &results);
        assert_eq!(t.len(), 4);
        assert_eq!((t.counts.up, t.counts.down, t.counts.errors()), (2, 1, 1));
        let back: Vec<(Vec<&str>, TargetView)> = t.errors_first().map(|t| (t.labels, t.state)).collect();
        assert_eq!(
            back,
            vec![
                (vec!["c", "z"], TargetView::Failed(Failure::Stale, "old")),
                (vec!["", "é"], TargetView::Down),
                (vec!["a", "x"], TargetView::Up),
                (vec!["d", ""], TargetView::Up),
            ]
        );
    }
}
