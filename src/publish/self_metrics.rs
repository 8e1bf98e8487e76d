//! The exporter's own metrics, under the `sql_signal_exporter_` prefix.
//!
//! These use the `prometheus` crate: their shape is fixed at compile time, which is what it models
//! well, and it brings the `process_*` collector. They are small and encoded per scrape, appended
//! after the rules' snapshot.

use prometheus::{Encoder, Gauge, GaugeVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use prometheus::proto::MetricType as ProtoType;

use crate::eval::exposition::{openmetrics, Family, Format, MetricType, Sample, Text};
use crate::publish::outcome::{EvaluationResult, Outcome};
use crate::rules::limits::WATCHDOG_MARGIN;

/// A source's connections at the end of an evaluation, as the rule's task saw them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceUse {
    pub name: String,
    pub open: usize,
    pub in_use: usize,
}

/// `metric`, once registered on `registry`.
fn registered<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
) -> prometheus::Result<M> {
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// A labelled self-metric `sql_signal_exporter_<suffix>`, registered on `registry`.
fn vec_of<M: LabelledMetric>(registry: &Registry, suffix: &str, help: &str, labels: &[&str]) -> prometheus::Result<M> {
    registered(registry, M::with_labels(Opts::new(name(suffix), help), labels)?)
}

/// The labelled metric types of the `prometheus` crate, built one way.
trait LabelledMetric: prometheus::core::Collector + Clone + Sized + 'static {
    fn with_labels(opts: Opts, labels: &[&str]) -> prometheus::Result<Self>;
}

impl LabelledMetric for GaugeVec {
    fn with_labels(opts: Opts, labels: &[&str]) -> prometheus::Result<Self> {
        GaugeVec::new(opts, labels)
    }
}

impl LabelledMetric for IntGaugeVec {
    fn with_labels(opts: Opts, labels: &[&str]) -> prometheus::Result<Self> {
        IntGaugeVec::new(opts, labels)
    }
}

impl LabelledMetric for IntCounterVec {
    fn with_labels(opts: Opts, labels: &[&str]) -> prometheus::Result<Self> {
        IntCounterVec::new(opts, labels)
    }
}

/// Every self-metric, registered on one registry.
pub struct SelfMetrics {
    registry: Registry,
    pub rule_last_duration: GaugeVec,
    pub rule_interval: GaugeVec,
    pub rule_last_success: GaugeVec,
    pub rule_last_status: IntGaugeVec,
    pub rule_evaluations: IntCounterVec,
    pub rule_rows: IntGaugeVec,
    pub rule_series: IntGaugeVec,
    pub rule_watchdog_expirations: IntCounterVec,
    pub db_connections: IntGaugeVec,
    pub db_connection_errors: IntCounterVec,
    pub reload_successful: IntGauge,
    pub reload_success_timestamp: Gauge,
}

fn name(suffix: &str) -> String {
    format!("{}{suffix}", crate::SELF_METRIC_PREFIX)
}

impl SelfMetrics {
    pub fn new() -> SelfMetrics {
        Self::try_new().expect("self-metric definitions are static and valid (checked by tests)")
    }

    fn try_new() -> prometheus::Result<SelfMetrics> {
        let registry = Registry::new();
        let build_info: IntGaugeVec = vec_of(
            &registry,
            "build_info",
            "A metric with a constant '1' value labeled by version and revision of the exporter.",
            &["version", "revision", "rustversion"],
        )?;
        let rustc = option_env!("SQL_SIGNAL_EXPORTER_RUSTC").unwrap_or("unknown");
        build_info.with_label_values(&[crate::VERSION, crate::REVISION, rustc]).set(1);
        let r = &registry;
        let watchdog_help = format!(
            "Times the rule went longer than interval + timeout + {}s without finishing an evaluation, and was served fail-safe.",
            WATCHDOG_MARGIN.as_secs()
        );
        let m = SelfMetrics {
            rule_last_duration: vec_of(
                r,
                "rule_last_duration_seconds",
                "Duration of the rule's last evaluation, query included.",
                &["rule"],
            )?,
            rule_interval: vec_of(r, "rule_interval_seconds", "The rule's evaluation interval.", &["rule"])?,
            rule_last_success: vec_of(
                r,
                "rule_last_success_timestamp_seconds",
                "Unix time of the rule's last successful evaluation.",
                &["rule"],
            )?,
            rule_last_status: vec_of(
                r,
                "rule_up",
                "1 if the rule's last evaluation succeeded, 0 if it failed or timed out.",
                &["rule"],
            )?,
            rule_evaluations: vec_of(
                r,
                "rule_evaluations_total",
                "Evaluations of the rule, by result (success, error, timeout).",
                &["rule", "result"],
            )?,
            rule_rows: vec_of(r, "rule_rows", "Rows the rule's last query returned.", &["rule"])?,
            rule_series: vec_of(r, "rule_series", "Series the rule's last evaluation produced.", &["rule"])?,
            rule_watchdog_expirations: vec_of(r, "rule_watchdog_expirations_total", &watchdog_help, &["rule"])?,
            db_connections: vec_of(
                r,
                "database_connections",
                "Connections to the database by state (open, in_use).",
                &["database", "state"],
            )?,
            db_connection_errors: vec_of(
                r,
                "database_connection_errors_total",
                "Failed attempts to get a connection to the database.",
                &["database"],
            )?,
            reload_successful: registered(
                r,
                IntGauge::new(
                    name("config_last_reload_successful"),
                    "Whether the last rules reload attempt was successful.",
                )?,
            )?,
            reload_success_timestamp: registered(
                r,
                Gauge::new(
                    name("config_last_reload_success_timestamp_seconds"),
                    "Unix time of the last successful rules reload.",
                )?,
            )?,
            registry,
        };
        #[cfg(target_os = "linux")]
        m.registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        Ok(m)
    }

    /// Records one evaluation of `rule`.
    pub fn observe(&self, rule: &str, outcome: &Outcome) {
        self.rule_last_duration.with_label_values(&[rule]).set(outcome.duration.as_secs_f64());
        let result = outcome.status.result();
        self.rule_evaluations.with_label_values(&[rule, result.as_str()]).inc();
        // Pre-create every result so rate() works from the first failure on.
        for result in EvaluationResult::ALL {
            self.rule_evaluations.with_label_values(&[rule, result.as_str()]);
        }
        let ok = result == EvaluationResult::Success;
        self.rule_last_status.with_label_values(&[rule]).set(ok as i64);
        if ok {
            self.rule_last_success.with_label_values(&[rule]).set(unix_now());
        }
        self.rule_rows.with_label_values(&[rule]).set(outcome.rows as i64);
        self.rule_series.with_label_values(&[rule]).set(outcome.series() as i64);
    }

    /// Records a source's connections after an evaluation, and a failed attempt to get one.
    pub fn observe_source(&self, source: &SourceUse, outcome: &Outcome) {
        let errors = self.db_connection_errors.with_label_values(&[&source.name]);
        if outcome.connect_failures.contains(&source.name) {
            errors.inc();
        }
        self.db_connections.with_label_values(&[&source.name, "open"]).set(source.open as i64);
        self.db_connections.with_label_values(&[&source.name, "in_use"]).set(source.in_use as i64);
    }

    /// Records the watchdog's expiry of a rule: counted, and the rule is down.
    pub fn observe_expiry(&self, rule: &str) {
        self.rule_watchdog_expirations.with_label_values(&[rule]).inc();
        self.rule_last_status.with_label_values(&[rule]).set(0);
    }

    /// Removes every series of a rule that no longer exists.
    pub fn forget_rule(&self, rule: &str) {
        let _ = self.rule_last_duration.remove_label_values(&[rule]);
        let _ = self.rule_interval.remove_label_values(&[rule]);
        let _ = self.rule_last_success.remove_label_values(&[rule]);
        let _ = self.rule_last_status.remove_label_values(&[rule]);
        let _ = self.rule_rows.remove_label_values(&[rule]);
        let _ = self.rule_series.remove_label_values(&[rule]);
        let _ = self.rule_watchdog_expirations.remove_label_values(&[rule]);
        for result in EvaluationResult::ALL {
            let _ = self.rule_evaluations.remove_label_values(&[rule, result.as_str()]);
        }
    }

    /// Encodes every self-metric in the text format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4096);
        // Encoding our own static metrics into a Vec cannot fail; an error would only drop them.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }

    /// The same metrics in `format`: the text format as the `prometheus` crate encodes it, or
    /// OpenMetrics through the exporter's own renderer (the crate has no OpenMetrics encoder).
    pub fn render_in(&self, format: Format) -> Vec<u8> {
        match format {
            Format::Text => self.render(),
            Format::OpenMetrics => openmetrics::render(&self.families()),
        }
    }

    /// The gathered metrics as exposition families. Self-metrics are counters and gauges only (a
    /// test holds that every one is converted).
    fn families(&self) -> Vec<Family> {
        self.registry
            .gather()
            .iter()
            .filter_map(|mf| {
                let (kind, read): (MetricType, fn(&prometheus::proto::Metric) -> f64) = match mf.get_field_type() {
                    ProtoType::COUNTER => (MetricType::Counter, |m| m.get_counter().value()),
                    ProtoType::GAUGE => (MetricType::Gauge, |m| m.get_gauge().value()),
                    _ => return None,
                };
                let mut family = Family::new(mf.name(), mf.help(), kind);
                family.samples = mf
                    .get_metric()
                    .iter()
                    .map(|m| {
                        let labels = m.get_label().iter().map(|l| (Text::from(l.name()), Text::from(l.value())));
                        Sample { labels: labels.collect(), value: read(m) }
                    })
                    .collect();
                Some(family)
            })
            .collect()
    }
}

impl Default for SelfMetrics {
    fn default() -> Self {
        Self::new()
    }
}

pub fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn self_metrics_register_and_render() {
        let m = super::SelfMetrics::new();
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains("sql_signal_exporter_build_info{"));
    }

    #[test]
    fn every_self_metric_is_in_openmetrics_too() {
        let m = super::SelfMetrics::new();
        m.rule_evaluations.with_label_values(&["r", "success"]).inc();
        let text = String::from_utf8(m.render()).unwrap();
        let om = String::from_utf8(m.render_in(super::Format::OpenMetrics)).unwrap();
        let series = |s: &str| s.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(series(&text), series(&om), "{text}\n---\n{om}");
        assert!(om.contains("# TYPE sql_signal_exporter_rule_evaluations counter\n"), "{om}");
        assert!(om.contains("sql_signal_exporter_rule_evaluations_total{result=\"success\",rule=\"r\"} 1\n"), "{om}");
    }
}
