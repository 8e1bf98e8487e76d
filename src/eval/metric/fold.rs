//! What every family's fold shares: the columns it reads, how it fails, and the one fact about a
//! family's shape the folds ask.

use crate::rules::model::{FamilyValues, Histogram, MetricFamily};

/// Why a histogram, summary or state set failed on its own, or why a family named from a column
/// refused a key: the reason named in its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyFailure {
    /// A cumulative bucket counts fewer than the bucket below it.
    DecreasingBuckets,
    /// A `le` that is not a number (nor `+Inf`).
    BadLe,
    /// The `_count` column differs from the `+Inf` bucket.
    CountMismatch,
    /// One label set has the same bucket bound twice.
    DuplicateBucket,
    /// A quantile that is not a number from 0 to 1, or twice for one label set.
    BadQuantile,
    /// A state set's column holds a value that is none of its states; a `name_from` key is NULL.
    BadValue,
    /// A name taken from a column is another family's, or reserved: that key's rows are dropped.
    NameConflict,
}

impl FamilyFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            FamilyFailure::DecreasingBuckets => "decreasing_buckets",
            FamilyFailure::BadLe => "bad_le",
            FamilyFailure::CountMismatch => "count_mismatch",
            FamilyFailure::DuplicateBucket => "duplicate_bucket",
            FamilyFailure::BadQuantile => "bad_quantile",
            FamilyFailure::BadValue => "bad_value",
            FamilyFailure::NameConflict => "name_conflict",
        }
    }

    /// The message of this failure of family `f`: `family F: REASON: detail`.
    pub(super) fn of(self, f: &MetricFamily, detail: String) -> FoldError {
        FoldError::Family(self.message(&f.name, detail))
    }

    /// The message of this failure of the family named `family`.
    pub(super) fn message(self, family: &str, detail: String) -> String {
        format!("family {family}: {}: {detail}", self.as_str())
    }
}

/// What stops a family's fold.
#[derive(Debug)]
pub(super) enum FoldError {
    /// The rule's result cannot be used: none of the run's series are served.
    Rule(String),
    /// This family's rows contradict themselves: it alone is withdrawn (or follows `on_error`).
    Family(String),
}

impl FoldError {
    /// The message, whichever kind of failure.
    pub(super) fn into_message(self) -> String {
        match self {
            FoldError::Rule(m) | FoldError::Family(m) => m,
        }
    }
}

impl From<String> for FoldError {
    fn from(message: String) -> FoldError {
        FoldError::Rule(message)
    }
}

/// The column positions a family reads, once its statement announced its columns.
#[derive(Debug, Clone)]
pub(super) struct Columns {
    /// Per key label, its column; `None`: the result has none (`absent_key_columns: empty`).
    pub(super) keys: Vec<Option<usize>>,
    /// In the order of [`FamilyValues::columns`].
    pub(super) values: Vec<usize>,
    pub(super) created: Option<usize>,
    /// The column whose value names the family (`name_from`).
    pub(super) name_key: Option<usize>,
    /// `name_from: {columns: each}`: every other column, each naming a family (position, name).
    pub(super) each: Vec<(usize, String)>,
}

/// Whether `f` is a histogram of raw values (which reports zero observations when it has none).
pub(super) fn counts_observations(f: &MetricFamily) -> bool {
    matches!(&f.values, FamilyValues::Histogram(Histogram::Observations { .. }))
}
