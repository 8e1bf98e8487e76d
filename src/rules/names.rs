//! Names across all files: rule names and metric names are unique, and metric and label names follow
//! what Prometheus reserves or gives a meaning to.

use std::path::Path;

use super::diagnostic::Diagnostic;
use super::loader::Ctx;

impl Ctx<'_> {
    pub(super) fn claim_rule_name(&mut self, path: &Path, pointer: String, name: &str) {
        if let Some((file, first)) = self.rule_names.get(name) {
            let at = match self.spans.get(file).and_then(|t| t.position(first)) {
                Some((line, _)) if file == path => format!("line {line}"),
                Some((line, col)) => format!("{}:{line}:{col}", file.display()),
                None => file.display().to_string(),
            };
            let msg = format!("rule name '{name}' is already used by the rule at {at}; rule names must be unique");
            self.error(path, pointer, msg);
        } else {
            self.rule_names.insert(name.to_string(), (path.to_path_buf(), pointer));
        }
    }

    pub(super) fn claim_metric_name(&mut self, path: &Path, pointer: String, metric: &str, rule: &str) {
        if let Some((first, file)) = self.metric_names.get(metric) {
            let msg = if first == rule && file == path {
                format!("metric name '{metric}' is used twice in rule '{rule}'; every metric needs a name of its own")
            } else if file == path {
                format!("metric name '{metric}' is already produced by rule '{first}'; metric names must be unique")
            } else {
                format!(
                    "metric name '{metric}' is already produced by rule '{first}' in {}; metric names must be unique",
                    file.display()
                )
            };
            self.error(path, pointer, msg);
        } else if metric.starts_with(crate::SELF_METRIC_PREFIX) {
            self.error(
                path,
                pointer,
                format!(
                    "metric names starting with '{}' are reserved for the exporter's own metrics",
                    crate::SELF_METRIC_PREFIX
                ),
            );
        } else if metric.starts_with("process_") {
            self.error(
                path,
                pointer,
                format!("metric name '{metric}' clashes with the exporter's own process_* metrics"),
            );
        } else if metric.starts_with("__") {
            self.error(path, pointer, format!("metric name '{metric}' starts with '__', which Prometheus reserves"));
        } else {
            if metric.contains(':') {
                let msg = format!("metric name '{metric}' contains ':', which Prometheus reserves for recording rules");
                self.diags.push(Diagnostic::warning(path, pointer, msg));
            }
            self.metric_names.insert(metric.to_string(), (rule.to_string(), path.to_path_buf()));
        }
    }

    /// A label name the file declares: `__` names belong to Prometheus.
    pub(super) fn check_label_name(&mut self, path: &Path, pointer: String, label: &str) {
        if label.starts_with("__") {
            self.error(path, pointer, format!("label name '{label}' starts with '__', which Prometheus reserves"));
        }
    }
}

/// What a label name means to Prometheus when it means something already.
pub(super) fn special_label_meaning(label: &str) -> Option<&'static str> {
    match label {
        "le" => Some("the upper bound of a histogram bucket"),
        "quantile" => Some("the quantile of a summary"),
        "job" | "instance" => Some("set by Prometheus on every scraped series; the scrape renames it to exported_*"),
        _ => None,
    }
}
