//! The model both formats render: families of series, a histogram's or summary's label sets, and
//! the formats a scraper can ask for.

/// An exposition format a scraper can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0 (text).
    OpenMetrics,
}

impl Format {
    pub const ALL: [Format; 2] = [Format::Text, Format::OpenMetrics];

    /// The `Content-Type` of a body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Gauge,
    Counter,
    Untyped,
    /// Series of value 1 whose labels carry the information (a gauge in the text format).
    Info,
    /// One series per state, 1 for the current one (a gauge in the text format).
    StateSet,
    /// Cumulative buckets, sum and count per label set ([`Family::distributions`]).
    Histogram,
    /// Quantiles, sum and count per label set ([`Family::distributions`]).
    Summary,
}

/// A label name or value, shared: every series of a family holds its label names once, and the
/// series of one target (a signal's `up` and each `error{reason}`) its label values once. At 100,000
/// series that is most of an evaluation's memory.
pub type Text = std::sync::Arc<str>;

/// The most distinct values a [`LabelValueInterner`] shares. A label with more (a pod name, an id)
/// is taken for unique per series: sharing its texts would cost a set as large as what it saves, so
/// the set is dropped and each text stands alone.
const SHARED_VALUES_PER_LABEL: usize = 4096;

/// The texts of one label's values seen so far in an evaluation, shared while they are few (a
/// cluster, a namespace, a type): one text per distinct value rather than one per series.
#[derive(Debug, Default)]
pub struct LabelValueInterner {
    seen: std::collections::HashSet<Text>,
    /// More than [`SHARED_VALUES_PER_LABEL`] were seen: no longer shared.
    unique: bool,
}

impl LabelValueInterner {
    /// `value` as a label text: the one made earlier for the same value, if any.
    pub fn share(&mut self, value: &str) -> Text {
        if let Some(t) = self.seen.get(value) {
            return t.clone();
        }
        let t = Text::from(value);
        if !self.unique {
            if self.seen.len() < SHARED_VALUES_PER_LABEL {
                self.seen.insert(t.clone());
            } else {
                self.unique = true;
                self.seen = std::collections::HashSet::new();
            }
        }
        t
    }
}

/// One series: label pairs (any order) and a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Vec<(Text, Text)>,
    pub value: f64,
}

impl Sample {
    /// A series from owned label pairs.
    pub fn owned(labels: Vec<(String, String)>, value: f64) -> Sample {
        Sample { labels: labels.into_iter().map(|(k, v)| (k.into(), v.into())).collect(), value }
    }
}

/// The histogram or summary of one label set.
#[derive(Debug, Clone, PartialEq)]
pub struct Distribution {
    pub labels: Vec<(Text, Text)>,
    /// A histogram's buckets as (upper bound, cumulative count), ascending, the last one `+Inf`; a
    /// summary's quantiles as (quantile, value), ascending.
    pub points: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
    /// When the series started counting, in seconds since the epoch (OpenMetrics' `_created`).
    pub created: Option<f64>,
}

/// A metric family: every series of one name.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub kind: MetricType,
    /// The unit the name ends in (OpenMetrics' `# UNIT`).
    pub unit: Option<String>,
    /// The series of a gauge, counter, untyped, info or state-set family.
    pub samples: Vec<Sample>,
    /// A counter's `_created` per sample (NaN: unknown), or empty when the family declares none.
    pub created: Vec<f64>,
    /// The label sets of a histogram or summary.
    pub distributions: Vec<Distribution>,
}

impl Family {
    pub fn new(name: &str, help: &str, kind: MetricType) -> Family {
        Family {
            name: name.to_string(),
            help: help.to_string(),
            kind,
            unit: None,
            samples: Vec::new(),
            created: Vec::new(),
            distributions: Vec::new(),
        }
    }

    /// The series the family exposes in the text format: one per sample, and per histogram or
    /// summary label set one per point plus `_sum` and `_count`.
    pub fn series(&self) -> usize {
        self.samples.len() + self.distributions.iter().map(|d| d.points.len() + 2).sum::<usize>()
    }

    /// Whether the family has no series (it would print only its metadata).
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty() && self.distributions.is_empty()
    }

    /// Moves `other`'s series into this family (the same family from another source).
    pub fn absorb(&mut self, other: Family) {
        if !other.created.is_empty() || !self.created.is_empty() {
            self.created.resize(self.samples.len(), f64::NAN);
            let mut theirs = other.created;
            theirs.resize(other.samples.len(), f64::NAN);
            self.created.extend(theirs);
        }
        self.samples.extend(other.samples);
        self.distributions.extend(other.distributions);
    }
}
