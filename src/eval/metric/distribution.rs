//! Histograms and summaries: rows folded into one distribution per label set.
//!
//! - **Raw values** (one row per observation): each row adds 1 to the first bucket whose bound is at
//!   or above it and its value to the sum; memory is label sets × buckets, whatever the rows.
//! - **Bucket rows** (one row per bucket): each row gives a bound and its count; at the end each
//!   label set's buckets are sorted, summed when counted per bucket, and checked: a bound twice, a
//!   cumulative count that decreases, a `_count` that differs from `+Inf` each fail the family with
//!   its [`FamilyFailure`]. `+Inf` and `_count` are derived from each other, or from the last bucket,
//!   when the rows do not give them.
//! - **Quantile rows** (a summary): a quantile and its value per row, sum and count per label set.

use std::collections::HashMap;

use super::cells::{bound, created, describe_labels, value};
use super::fold::{counts_observations, Columns, FamilyFailure, FoldError};
use crate::eval::cell::Cell;
use crate::eval::exposition::{format_value, Distribution, Family, Text};
use crate::rules::model::{BucketCounts, FamilyValues, Histogram, MetricFamily};

/// One label set's distribution so far.
struct Partial {
    labels: Vec<(Text, Text)>,
    /// Raw values: the count of each bucket alone, `+Inf` last. Rows: (bound, count) as read.
    points: Vec<(f64, f64)>,
    sum: Option<f64>,
    count: Option<f64>,
    created: Option<f64>,
}

/// The distributions of a histogram or summary family so far.
pub(super) struct DistributionFold {
    /// Label values (in the family's label order) → position in `partials`.
    index: HashMap<Box<[Text]>, usize>,
    partials: Vec<Partial>,
    /// Raw values: the declared bounds, then `+Inf`.
    bounds: Vec<f64>,
}

impl DistributionFold {
    pub(super) fn new(f: &MetricFamily) -> DistributionFold {
        let bounds = match &f.values {
            FamilyValues::Histogram(Histogram::Observations { buckets, .. }) => {
                buckets.iter().copied().chain([f64::INFINITY]).collect()
            }
            _ => Vec::new(),
        };
        DistributionFold { index: HashMap::new(), partials: Vec::new(), bounds }
    }

    /// The distribution of `labels`, made on first sight.
    fn partial(&mut self, labels: Vec<(Text, Text)>) -> &mut Partial {
        let key: Box<[Text]> = labels.iter().map(|(_, v)| v.clone()).collect();
        let next = self.partials.len();
        let i = *self.index.entry(key).or_insert(next);
        if i == next {
            let points = self.bounds.iter().map(|&b| (b, 0.0)).collect();
            self.partials.push(Partial { labels, points, sum: None, count: None, created: None });
        }
        &mut self.partials[i]
    }

    pub(super) fn row(
        &mut self,
        f: &MetricFamily,
        labels: Vec<(Text, Text)>,
        columns: &Columns,
        row: &[Cell],
    ) -> Result<(), FoldError> {
        let cols = f.values.columns();
        let cell = |j: usize| &row[columns.values[j]];
        let read = |j: usize| value(f, cols[j].0, cell(j));
        let when = columns.created.and_then(|i| created(&row[i]));
        match &f.values {
            FamilyValues::Histogram(Histogram::Observations { .. }) => {
                let observed = read(0)?;
                // A NULL counts nothing but makes its label set exist (a LEFT JOIN's zero histogram).
                let p = self.partial(labels);
                let Some(v) = observed else { return Ok(()) };
                // The first bucket at or above v; NaN only in +Inf, as Prometheus's clients count it.
                let bounds = &p.points;
                let at = if v.is_nan() { bounds.len() - 1 } else { bounds.partition_point(|&(b, _)| b < v) };
                p.points[at].1 += 1.0;
                p.sum = Some(p.sum.unwrap_or(0.0) + v);
                p.count = Some(p.count.unwrap_or(0.0) + 1.0);
                p.created = p.created.or(when);
            }
            FamilyValues::Histogram(Histogram::BucketRows(b)) => {
                let Some(le) = bound(cell(0)) else {
                    let detail = format!(
                        "column '{}' holds {} for {}{}, which is not a bucket bound (a number or +Inf)",
                        b.le,
                        cell(0).describe(),
                        f.name,
                        describe_labels(&labels)
                    );
                    return Err(FamilyFailure::BadLe.of(f, detail));
                };
                let Some(n) = read(1)? else { return Ok(()) };
                let (sum, count) = (read(2)?, if cols.len() > 3 { read(3)? } else { None });
                let p = self.partial(labels);
                p.points.push((le, n));
                p.sum = p.sum.or(sum);
                p.count = p.count.or(count);
                p.created = p.created.or(when);
            }
            FamilyValues::Summary(s) => {
                let q = bound(cell(0)).filter(|q| (0.0..=1.0).contains(q));
                let Some(q) = q else {
                    let detail = format!(
                        "column '{}' holds {} for {}{}, which is not a quantile (a number from 0 to 1)",
                        s.quantile,
                        cell(0).describe(),
                        f.name,
                        describe_labels(&labels)
                    );
                    return Err(FamilyFailure::BadQuantile.of(f, detail));
                };
                let Some(v) = read(1)? else { return Ok(()) };
                let (sum, count) = (read(2)?, read(3)?);
                let p = self.partial(labels);
                p.points.push((q, v));
                p.sum = p.sum.or(sum);
                p.count = p.count.or(count);
                p.created = p.created.or(when);
            }
            _ => {}
        }
        Ok(())
    }

    /// The distributions into `out`, each checked; `fixed` labels the zero histogram of a raw-value
    /// family without key labels that saw no observation.
    pub(super) fn finish(
        mut self,
        f: &MetricFamily,
        fixed: Vec<(Text, Text)>,
        out: &mut Family,
    ) -> Result<(), FoldError> {
        if self.partials.is_empty() && counts_observations(f) && f.key_labels.is_empty() {
            self.partial(fixed);
        }
        out.distributions.reserve_exact(self.partials.len());
        for p in self.partials {
            let d = match &f.values {
                FamilyValues::Histogram(Histogram::Observations { .. }) => observed(p),
                FamilyValues::Histogram(Histogram::BucketRows(b)) => from_rows(f, p, b.counts)?,
                _ => quantiles(f, p)?,
            };
            out.distributions.push(d);
        }
        Ok(())
    }
}

/// Raw values: each bucket's own count summed into the cumulative form.
fn observed(p: Partial) -> Distribution {
    let mut total = 0.0;
    let points = p
        .points
        .into_iter()
        .map(|(b, n)| {
            total += n;
            (b, total)
        })
        .collect();
    Distribution { labels: p.labels, points, sum: p.sum.unwrap_or(0.0), count: total, created: p.created }
}

/// Bucket rows: sorted, made cumulative, checked, with `+Inf` and `_count` from each other.
fn from_rows(f: &MetricFamily, mut p: Partial, counts: BucketCounts) -> Result<Distribution, FoldError> {
    let series = || format!("{}{}", f.name, describe_labels(&p.labels));
    p.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    if let Some(w) = p.points.windows(2).find(|w| w[0].0 == w[1].0) {
        let detail =
            format!("{} has two rows for bucket le={}; give each bound one row", series(), format_value(w[0].0));
        return Err(FamilyFailure::DuplicateBucket.of(f, detail));
    }
    if counts == BucketCounts::PerBucket {
        let mut total = 0.0;
        for point in &mut p.points {
            total += point.1;
            point.1 = total;
        }
    }
    if let Some(w) = p.points.windows(2).find(|w| w[1].1 < w[0].1) {
        let detail = format!(
            "{}: bucket le={} counts {}, fewer than le={}'s {}; cumulative buckets never decrease (declare counts: per_bucket if each row counts its own bucket only)",
            series(),
            format_value(w[1].0),
            format_value(w[1].1),
            format_value(w[0].0),
            format_value(w[0].1)
        );
        return Err(FamilyFailure::DecreasingBuckets.of(f, detail));
    }
    let last = p.points.last().copied().unwrap_or((f64::NEG_INFINITY, 0.0));
    let inf = match (last.0 == f64::INFINITY, p.count) {
        (true, _) => last.1,
        (false, Some(count)) => count,
        (false, None) => last.1,
    };
    if let Some(count) = p.count.filter(|&c| c != inf) {
        let detail = format!(
            "{}: the count column says {} observations, the +Inf bucket {}; they must be equal (is the count from another moment than the buckets?)",
            series(),
            format_value(count),
            format_value(inf)
        );
        return Err(FamilyFailure::CountMismatch.of(f, detail));
    }
    if inf < last.1 {
        let detail = format!(
            "{}: the count column says {} observations, fewer than the last bucket's {}",
            series(),
            inf,
            last.1
        );
        return Err(FamilyFailure::CountMismatch.of(f, detail));
    }
    if last.0 != f64::INFINITY {
        p.points.push((f64::INFINITY, inf));
    }
    Ok(Distribution { labels: p.labels, points: p.points, sum: p.sum.unwrap_or(0.0), count: inf, created: p.created })
}

/// Quantile rows: sorted, each quantile once.
fn quantiles(f: &MetricFamily, mut p: Partial) -> Result<Distribution, FoldError> {
    p.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    if let Some(w) = p.points.windows(2).find(|w| w[0].0 == w[1].0) {
        let detail = format!(
            "{}{} has two rows for quantile {}; give each quantile one row",
            f.name,
            describe_labels(&p.labels),
            format_value(w[0].0)
        );
        return Err(FamilyFailure::BadQuantile.of(f, detail));
    }
    Ok(Distribution {
        labels: p.labels,
        points: p.points,
        sum: p.sum.unwrap_or(0.0),
        count: p.count.unwrap_or(0.0),
        created: p.created,
    })
}
