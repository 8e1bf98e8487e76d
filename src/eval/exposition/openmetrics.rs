//! OpenMetrics 1.0, what Prometheus asks for first by default: the same series as the text format,
//! with the metadata OpenMetrics adds. A counter's family is named without its `_total` (its series
//! keep it), an info family without its `_info`; info and state sets have their own types; a family
//! with a unit gets `# UNIT`; counters, histograms and summaries that know when they started get
//! `_created`; the body ends in `# EOF` ([`EOF`], written after the exporter's own metrics).
//!
//! A counter whose name does not end in `_total` (a legacy name, `require_total_suffix: false`) is
//! typed `unknown` here: as a counter its series would have to be renamed, and a series that changes
//! name with the scrape format breaks every query on it.

use super::family::{Family, Format, MetricType};
use super::render::{self, Dialect};

/// The last line of every OpenMetrics body.
pub const EOF: &[u8] = b"# EOF\n";

/// The name of a family's metadata lines and its `# TYPE`.
pub fn meta(family: &Family) -> (&str, &'static str) {
    let name = family.name.as_str();
    match family.kind {
        MetricType::Counter => match name.strip_suffix("_total") {
            Some(stem) => (stem, "counter"),
            None => (name, "unknown"),
        },
        MetricType::Info => match name.strip_suffix("_info") {
            Some(stem) => (stem, "info"),
            None => (name, "gauge"),
        },
        MetricType::Gauge => (name, "gauge"),
        MetricType::Untyped => (name, "unknown"),
        MetricType::StateSet => (name, "stateset"),
        MetricType::Histogram => (name, "histogram"),
        MetricType::Summary => (name, "summary"),
    }
}

/// How OpenMetrics words a family's metadata.
pub(super) fn dialect() -> Dialect {
    Dialect { format: Format::OpenMetrics, meta }
}

/// `families` in OpenMetrics, in the given order, each family's series sorted; without `# EOF`.
pub fn render(families: &[Family]) -> Vec<u8> {
    render::render(families, &dialect())
}
