//! The Prometheus text format 0.0.4: what every Prometheus reads, and what `/metrics` serves unless
//! the scraper asks for OpenMetrics. It has no info or state-set type (both are gauges here), no
//! units and no `_created` series.

use super::family::{Family, Format, MetricType};
use super::render::{self, Dialect};

/// The `# TYPE` of a family of `kind`.
pub fn type_name(kind: MetricType) -> &'static str {
    match kind {
        MetricType::Gauge | MetricType::Info | MetricType::StateSet => "gauge",
        MetricType::Counter => "counter",
        MetricType::Untyped => "untyped",
        MetricType::Histogram => "histogram",
        MetricType::Summary => "summary",
    }
}

/// How the text format words a family's metadata.
pub(super) fn dialect() -> Dialect {
    Dialect { format: Format::Text, meta: |f| (&f.name, type_name(f.kind)) }
}

/// `families` in the text format, in the given order, each family's series sorted.
pub fn render(families: &[Family]) -> Vec<u8> {
    render::render(families, &dialect())
}
