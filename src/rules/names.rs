//! Names across all files: rule names and metric names are unique, and metric and label names follow
//! what Prometheus reserves or gives a meaning to.

use std::path::Path;
use std::sync::Arc;

use super::diagnostic::Diagnostic;
use super::loader::Ctx;
use super::model::{FamilyNaming, NameFrom, RuleKind};

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
        } else if let Some(msg) = reserved_metric_name(metric) {
            self.error(path, pointer, msg);
        } else {
            if metric.contains(':') {
                let msg = format!("metric name '{metric}' contains ':', which Prometheus reserves for recording rules");
                self.diags.push(Diagnostic::warning(path, pointer, msg));
            }
            self.metric_names.insert(metric.to_string(), (rule.to_string(), path.to_path_buf()));
        }
    }

    /// After every file is read: each family named from a column learns the names claimed elsewhere
    /// that it could generate (a row giving one is refused at run time); two such families that
    /// could generate the same name are an error, since no row could tell which family is meant.
    pub(super) fn settle_generated_names(&mut self) {
        let mut seen: Vec<(Arc<NameFrom>, String)> = Vec::new();
        for n in 0..self.set.rules.len() {
            let base = self.rule_pointers.get(n).cloned().unwrap_or_default();
            let rule = Arc::make_mut(&mut self.set.rules[n]);
            let RuleKind::Metric(m) = &mut rule.kind else { continue };
            let mut found = Vec::new();
            for (i, f) in m.families.iter_mut().enumerate() {
                let FamilyNaming::FromColumn(from) = &mut f.naming else { continue };
                let from = Arc::make_mut(from);
                from.taken = self
                    .metric_names
                    .iter()
                    .filter(|(name, _)| from.could_generate(name))
                    .map(|(name, (rule, _))| (name.clone(), rule.clone()))
                    .collect();
                found.push((i, Arc::new(from.clone())));
            }
            let (path, rule_name) = (rule.file.clone(), rule.name.clone());
            for (i, from) in found {
                let other = seen.iter().find(|(o, _)| names_may_meet(o, &from));
                if let Some((o, owner)) = other {
                    let msg = format!(
                        "the names of this family ({}) may be the same as those of a family of rule '{owner}' ({}); give them prefixes neither of which starts with the other",
                        from.pattern(),
                        o.pattern()
                    );
                    self.error(&path, format!("{base}/families/{i}/name_from"), msg);
                }
                seen.push((from, rule_name.clone()));
            }
        }
    }

    /// A label name the file declares: `__` names belong to Prometheus.
    pub(super) fn check_label_name(&mut self, path: &Path, pointer: String, label: &str) {
        if label.starts_with("__") {
            self.error(path, pointer, format!("label name '{label}' starts with '__', which Prometheus reserves"));
        }
    }
}

/// Whether two families named from columns could give the same name: one's prefix starts with the
/// other's and one's suffix ends with the other's.
fn names_may_meet(a: &NameFrom, b: &NameFrom) -> bool {
    let prefixes = a.prefix.starts_with(&b.prefix) || b.prefix.starts_with(&a.prefix);
    let suffixes = a.suffix.ends_with(&b.suffix) || b.suffix.ends_with(&a.suffix);
    prefixes && suffixes
}

/// Why `metric` may not be a rule's metric name, if it may not: the exporter's own prefix, its
/// `process_*` metrics, or a `__` name. Checked at load for declared names and per row for names
/// taken from a column.
pub fn reserved_metric_name(metric: &str) -> Option<String> {
    if metric.starts_with(crate::SELF_METRIC_PREFIX) {
        Some(format!(
            "metric names starting with '{}' are reserved for the exporter's own metrics",
            crate::SELF_METRIC_PREFIX
        ))
    } else if metric.starts_with("process_") {
        Some(format!("metric name '{metric}' clashes with the exporter's own process_* metrics"))
    } else if metric.starts_with("__") {
        Some(format!("metric name '{metric}' starts with '__', which Prometheus reserves"))
    } else {
        None
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
