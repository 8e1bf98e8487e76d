//! Loading one metric family (an entry of a metric rule's `families:`) into the typed model, split
//! by job: its name against Prometheus's conventions, its value shape (a column, unpivoted columns,
//! a histogram, a summary, a state set), its labels, and the declared outcomes that need a family
//! without key labels.
//!
//! What the schema cannot say is checked here, at the line of the key, so `--check-rules` fails CI
//! on it: buckets that are not ascending, a label that a histogram, summary or state set reserves
//! (`le`, `quantile`, the state set's own name) declared as a key label, a unit the name does not end
//! in.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use super::diagnostic::Diagnostic;
use super::loader::Ctx;
use super::model::*;
use super::names::reserved_metric_name;
use super::span;
use super::spec::{EachColumnSpec, FamilySpec, HistogramSpec, NameFromSpec};

/// The label a histogram's buckets carry their upper bound in.
pub const BUCKET_LABEL: &str = "le";
/// The label a summary's series carry their quantile in.
pub const QUANTILE_LABEL: &str = "quantile";

/// Where a family is declared and what of its rule it inherits.
pub(super) struct FamilyAt<'a> {
    pub(super) path: &'a Path,
    /// The family's JSON pointer (`/metrics/0/families/2`).
    pub(super) fptr: &'a str,
    pub(super) rule: &'a str,
    pub(super) rule_key_labels: &'a [String],
    pub(super) database_label: Option<&'a str>,
}

/// A name with the type it is checked against, and how to rename it when it breaks the type's rule.
struct Named<'a> {
    name: &'a str,
    kind: MetricKind,
    rename: &'static str,
}

impl FamilyAt<'_> {
    fn ptr(&self, key: &str) -> String {
        format!("{}/{key}", self.fptr)
    }
}

impl Ctx<'_> {
    /// Validates one family and returns it (also when it has errors: the load fails on any anyway).
    pub(super) fn metric_family(&mut self, at: &FamilyAt<'_>, mut f: FamilySpec) -> MetricFamily {
        let kind = f.kind.unwrap_or_default();
        let naming = match f.name_from.take() {
            Some(spec) => FamilyNaming::FromColumn(Arc::new(self.name_from(at, &f, spec, kind))),
            None => FamilyNaming::Declared,
        };
        let name = match &naming {
            FamilyNaming::FromColumn(n) => n.pattern(),
            FamilyNaming::Declared => f.name.clone().unwrap_or_default(),
        };
        self.family_name(at, &f, &name, &naming);
        let key_labels = f.key_labels.clone().unwrap_or_else(|| at.rule_key_labels.to_vec());
        let values = self.family_values(at, &f, kind);
        self.family_labels(at, &f, &key_labels, &values);
        self.family_outcomes(at, &f, kind, &key_labels);
        self.family_unit_and_created(at, &f, &name, kind);
        let key_columns = self.key_columns(at, &f, &key_labels);
        let text_values = self.text_values(at, &f);
        MetricFamily {
            name,
            naming,
            help: f.help,
            kind,
            key_labels,
            key_columns,
            absent_key_columns: f.absent_key_columns.unwrap_or_default(),
            text_values,
            static_labels: f.static_labels.into_iter().collect(),
            values,
            on_null: f.on_null.unwrap_or_default(),
            on_empty: f.on_empty.unwrap_or_default(),
            on_error: f.on_error.unwrap_or_default(),
            query: f.query,
            unit: f.unit,
            created: f.created,
        }
    }

    /// The name against what promtool (and every Prometheus user) expects of each type; a declared
    /// name is claimed (a name taken from a column is checked per row, see [`NameFrom::taken`]).
    fn family_name(&mut self, at: &FamilyAt<'_>, f: &FamilySpec, name: &str, naming: &FamilyNaming) {
        let kind = f.kind.unwrap_or_default();
        let (key, rename) = match naming {
            FamilyNaming::Declared => {
                self.claim_metric_name(at.path, at.ptr("name"), name, at.rule);
                ("name", "rename it")
            }
            FamilyNaming::FromColumn(_) => ("name_from", "give name_from a suffix ending in _total"),
        };
        self.kind_naming(at, at.ptr(key), Named { name, kind, rename }, f);
        // A name an existing exporter used, kept so dashboards keep working: no naming warnings.
        let legacy = f.legacy_name == Some(true);
        let reserved = ["_count", "_sum", "_bucket"].into_iter().find(|s| name.ends_with(s));
        if let Some(suffix) = reserved.filter(|_| !legacy) {
            let msg = match kind {
                MetricKind::Histogram | MetricKind::Summary => format!(
                    "'{name}' ends in {suffix}; name the {} itself (its series get _bucket, _sum and _count added)",
                    kind.as_str()
                ),
                _ => format!("'{name}' ends in {suffix}, which Prometheus reserves for histograms and summaries; promtool will flag it"),
            };
            self.diags.push(Diagnostic::warning(at.path, at.ptr(key), msg));
        }
        if f.require_total_suffix.is_some() && kind != MetricKind::Counter {
            self.error(at.path, at.ptr("require_total_suffix"), "require_total_suffix applies to counters only");
        }
        // A histogram's or summary's series names are taken too: a gauge named like them would clash.
        let suffixes: &[&str] = match kind {
            MetricKind::Histogram => &["_bucket", "_sum", "_count"],
            MetricKind::Summary => &["_sum", "_count"],
            _ => &[],
        };
        for s in suffixes {
            self.claim_metric_name(at.path, at.ptr("name"), &format!("{name}{s}"), at.rule);
        }
    }

    /// A family named from a column: its prefix, its overrides, and the outcomes that would need a
    /// name without a row.
    fn name_from(&mut self, at: &FamilyAt<'_>, f: &FamilySpec, spec: NameFromSpec, kind: MetricKind) -> NameFrom {
        if let Some(why) = reserved_metric_name(&spec.prefix) {
            let msg = format!(
                "prefix '{}': {why}; every name of this family would start with it, choose another prefix",
                spec.prefix
            );
            self.error(at.path, at.ptr("name_from/prefix"), msg);
        }
        for (key, zero) in
            [("on_empty", f.on_empty == Some(OnEmpty::Zero)), ("on_error", f.on_error == Some(OnError::Zero))]
        {
            if zero {
                let msg = format!("{key}: zero does not apply to a family named from a column: without a row there is no name for the zero series; drop {key}");
                self.error(at.path, at.ptr(key), msg);
            }
        }
        let key = match (spec.column, spec.columns) {
            (Some(column), _) => NameKey::Column(column),
            // The schema requires one of `column` and `columns`.
            (None, Some(EachColumnSpec::Each) | None) => NameKey::EachColumn,
        };
        let mut out = NameFrom {
            key,
            prefix: spec.prefix,
            suffix: spec.suffix,
            overrides: BTreeMap::new(),
            taken: BTreeMap::new(),
        };
        for (name, o) in &f.overrides {
            let pointer = at.ptr(&format!("overrides/{}", span::escape(name)));
            if !out.could_generate(name) {
                let msg = format!(
                    "override '{name}' is not a name this family can give (its names are {}); write the full generated name, prefix and suffix included",
                    out.pattern()
                );
                self.warning(at.path, pointer.clone(), msg);
            }
            let rename = "write the override's name as generated, ending in _total";
            self.kind_naming(at, pointer, Named { name, kind: o.kind.unwrap_or(kind), rename }, f);
            out.overrides.insert(name.clone(), NameOverride { kind: o.kind, help: o.help.clone() });
        }
        out
    }

    /// The column each key label reads, in `key_labels` order; a `key_columns` entry for a label the
    /// family does not have is an error at its key.
    fn key_columns(&mut self, at: &FamilyAt<'_>, f: &FamilySpec, key_labels: &[String]) -> Vec<String> {
        for label in f.key_columns.keys().filter(|l| !key_labels.contains(l)) {
            let msg = format!(
                "key_columns names label '{label}', which is not a key label of this family (its key labels: {}); add it to key_labels or drop the entry",
                if key_labels.is_empty() { "none".to_string() } else { key_labels.join(", ") }
            );
            self.error(at.path, at.ptr(&format!("key_columns/{}", span::escape(label))), msg);
        }
        key_labels.iter().map(|l| f.key_columns.get(l).unwrap_or(l).clone()).collect()
    }

    /// `text_values`, compared without case: two texts that differ only in case are an error.
    fn text_values(&mut self, at: &FamilyAt<'_>, f: &FamilySpec) -> TextValues {
        let mut seen: BTreeMap<String, &str> = BTreeMap::new();
        for text in f.text_values.keys() {
            if let Some(first) = seen.insert(text.to_lowercase(), text) {
                let msg = format!(
                    "text_values has '{first}' and '{text}', which are one text (texts are compared without case); keep one"
                );
                self.error(at.path, at.ptr(&format!("text_values/{}", span::escape(text))), msg);
            }
        }
        TextValues::new(f.text_values.iter().map(|(t, v)| (t.clone(), *v)))
    }

    /// The suffix a type asks of a name (a counter's `_total`, an info family's `_info`) at
    /// `pointer`: for a declared name, a name taken from a column, and each of its overrides.
    fn kind_naming(&mut self, at: &FamilyAt<'_>, pointer: String, named: Named<'_>, f: &FamilySpec) {
        let Named { name, kind, rename } = named;
        let path = at.path;
        let legacy = f.legacy_name == Some(true);
        match kind {
            MetricKind::Counter if !name.ends_with("_total") && f.require_total_suffix != Some(false) => self.error(
                path,
                pointer,
                format!("counter '{name}' must end in _total (the Prometheus convention promtool checks); {rename}, or set require_total_suffix: false to keep a legacy name"),
            ),
            MetricKind::Info if !name.ends_with("_info") => {
                self.error(path, pointer, format!("info metric '{name}' must end in _info"))
            }
            MetricKind::Gauge if name.ends_with("_total") && !legacy => self.diags.push(Diagnostic::warning(
                path,
                pointer,
                format!("gauge '{name}' ends in _total, which Prometheus reserves for counters; promtool will flag it"),
            )),
            _ => {}
        }
    }

    /// Where the family's values come from; the schema has already required the keys of its type.
    fn family_values(&mut self, at: &FamilyAt<'_>, f: &FamilySpec, kind: MetricKind) -> FamilyValues {
        match kind {
            MetricKind::Histogram => match &f.histogram {
                Some(h) => FamilyValues::Histogram(self.histogram(at, h)),
                None => FamilyValues::One,
            },
            MetricKind::Summary => match &f.summary {
                Some(s) => FamilyValues::Summary(Summary {
                    quantile: s.quantile.clone(),
                    value: s.value.clone(),
                    sum: s.sum.clone(),
                    count: s.count.clone(),
                }),
                None => FamilyValues::One,
            },
            MetricKind::StateSet => match &f.stateset {
                Some(s) => FamilyValues::StateSet(StateSet { column: s.column.clone(), states: s.states.clone() }),
                None => FamilyValues::One,
            },
            MetricKind::Gauge | MetricKind::Counter | MetricKind::Untyped | MetricKind::Info => {
                match (f.value.clone(), f.values.clone(), f.value_label.clone()) {
                    (Some(column), None, None) => FamilyValues::Column(column),
                    (None, Some(columns), Some(label)) => FamilyValues::Unpivot { label, columns },
                    // The schema allows no other combination: an info family has no value column.
                    _ => FamilyValues::One,
                }
            }
        }
    }

    /// A histogram's shape, one of two (the loader words which keys are missing or mixed); raw
    /// values' buckets must be finite, ascending and distinct.
    fn histogram(&mut self, at: &FamilyAt<'_>, h: &HistogramSpec) -> Histogram {
        let raw = [("observe", h.observe.is_some()), ("buckets", h.buckets.is_some())];
        let rows = [("le", h.le.is_some()), ("bucket", h.bucket.is_some()), ("sum", h.sum.is_some())];
        let extra = [("counts", h.counts.is_some()), ("count", h.count.is_some())];
        let given = |keys: &[(&'static str, bool)]| keys.iter().any(|(_, set)| *set);
        let missing = |keys: &[(&'static str, bool)]| -> Vec<&'static str> {
            keys.iter().filter(|(_, set)| !set).map(|(k, _)| *k).collect()
        };
        let (shape_missing, mixed) =
            if given(&raw) { (missing(&raw), given(&rows) || given(&extra)) } else { (missing(&rows), false) };
        if mixed {
            let msg = "a histogram reads either raw values (observe, buckets) or bucket rows (le, bucket, sum, and optionally counts, count), not both; keep one shape";
            self.error(at.path, at.ptr("histogram"), msg);
        } else if !shape_missing.is_empty() {
            let keys: Vec<String> = shape_missing.iter().map(|k| format!("'{k}'")).collect();
            let msg = if given(&raw) {
                format!("a raw-value histogram needs {} (observe: the column of one observation per row; buckets: the upper bounds)", keys.join(" and "))
            } else {
                format!("a histogram of bucket rows needs {} (le: the bound column; bucket: its count; sum: the sum of the observations); for one row per observation give observe and buckets instead", keys.join(" and "))
            };
            self.error(at.path, at.ptr("histogram"), msg);
        }
        if let (Some(column), Some(buckets)) = (&h.observe, &h.buckets) {
            self.check_buckets(at, buckets);
            return Histogram::Observations { column: column.clone(), buckets: buckets.clone() };
        }
        Histogram::BucketRows(BucketRows {
            le: h.le.clone().unwrap_or_default(),
            bucket: h.bucket.clone().unwrap_or_default(),
            counts: h.counts.unwrap_or_default(),
            sum: h.sum.clone().unwrap_or_default(),
            count: h.count.clone(),
        })
    }

    /// Raw values' buckets: ascending, each once.
    fn check_buckets(&mut self, at: &FamilyAt<'_>, buckets: &[f64]) {
        for (i, pair) in buckets.windows(2).enumerate() {
            if pair[1] <= pair[0] {
                let what = if pair[1] == pair[0] { "repeats" } else { "is below" };
                self.error(
                    at.path,
                    at.ptr(&format!("histogram/buckets/{}", i + 1)),
                    format!(
                        "bucket {} {what} the bucket before it ({}); list the buckets' upper bounds in ascending order, each once",
                        pair[1], pair[0]
                    ),
                );
            }
        }
    }

    /// Every label of a series must be distinct: the database label, static labels, key labels, the
    /// label that names an unpivoted column, and the label a histogram, summary or state set adds.
    fn family_labels(&mut self, at: &FamilyAt<'_>, f: &FamilySpec, key_labels: &[String], values: &FamilyValues) {
        // A state set's label is its declared name (the schema allows no state set named from a column).
        let name = f.name.as_deref().unwrap_or_default();
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        let mut clash = Vec::new();
        let mut claim = |label: &str, role: String| match seen.get(label) {
            Some(first) => clash.push(format!("label '{label}' is both {first} and {role}")),
            None => {
                seen.insert(label.to_string(), role);
            }
        };
        match values {
            FamilyValues::Histogram(_) => claim(BUCKET_LABEL, "the histogram's bucket label".to_string()),
            FamilyValues::Summary(_) => claim(QUANTILE_LABEL, "the summary's quantile label".to_string()),
            FamilyValues::StateSet(_) => claim(name, "the state set's state label (its own name)".to_string()),
            _ => {}
        }
        if let Some(l) = at.database_label {
            claim(l, "the database label".to_string());
        }
        for l in f.static_labels.keys() {
            claim(l, "a static label".to_string());
        }
        for l in key_labels {
            claim(l, "a key label".to_string());
        }
        if let FamilyValues::Unpivot { label, .. } = values {
            claim(label, "the value_label".to_string());
        }
        for msg in clash {
            self.error(at.path, at.fptr, format!("{msg}; rename one of them (an SQL alias renames a column)"));
        }
        let labels: BTreeSet<&String> = key_labels.iter().chain(f.static_labels.keys()).collect();
        for l in labels {
            self.check_label_name(at.path, at.fptr.to_string(), l);
        }
        if let FamilyValues::Unpivot { label, .. } = values {
            self.check_label_name(at.path, at.ptr("value_label"), label);
        }
        if let FamilyValues::StateSet(_) = values {
            if name.contains(':') {
                let msg = format!(
                    "state set '{name}' names its state label after itself, and a label name has no ':'; rename the family"
                );
                self.error(at.path, at.ptr("name"), msg);
            }
        }
    }

    /// `on_null`, `on_empty: zero` and `on_error: zero` where they apply.
    fn family_outcomes(&mut self, at: &FamilyAt<'_>, f: &FamilySpec, kind: MetricKind, key_labels: &[String]) {
        let on_empty = f.on_empty.unwrap_or_default();
        let on_error = f.on_error.unwrap_or_default();
        let zero = [("on_empty", on_empty == OnEmpty::Zero), ("on_error", on_error == OnError::Zero)];
        let no_zero_series = match kind {
            MetricKind::Info => Some("an info family: its series are 1 for each row"),
            MetricKind::StateSet => Some("a state set: its series are one per declared state of each row"),
            MetricKind::Histogram | MetricKind::Summary => Some(
                "a histogram or summary: it has no zero series (a raw-value histogram without key labels reports zero observations by itself)",
            ),
            MetricKind::Gauge | MetricKind::Counter | MetricKind::Untyped => None,
        };
        if let Some(why) = no_zero_series {
            let on_null = ("on_null", f.on_null.is_some() && matches!(kind, MetricKind::Info | MetricKind::StateSet));
            for (key, set) in zero.into_iter().chain([on_null]) {
                if set {
                    self.error(at.path, at.ptr(key), format!("{key} does not apply to {why}"));
                }
            }
            return;
        }
        for (key, zero) in zero {
            if zero && !key_labels.is_empty() {
                self.error(
                    at.path,
                    at.ptr(key),
                    format!(
                        "{key}: zero needs a family without key labels (the zero series would have no value for {}); give this family key_labels: [] or drop {key}",
                        key_labels.join(", ")
                    ),
                );
            }
        }
    }

    /// A unit is the end of the name (before `_total`), and OpenMetrics gives none to an info or
    /// state-set family; `created` belongs to the families that count from a start.
    fn family_unit_and_created(&mut self, at: &FamilyAt<'_>, f: &FamilySpec, name: &str, kind: MetricKind) {
        if let Some(unit) = &f.unit {
            let stem = name.strip_suffix("_total").filter(|_| kind == MetricKind::Counter).unwrap_or(name);
            if matches!(kind, MetricKind::Info | MetricKind::StateSet) {
                let msg =
                    format!("unit does not apply to {} families (OpenMetrics gives them none); drop it", kind.as_str());
                self.error(at.path, at.ptr("unit"), msg);
            } else if !stem.ends_with(&format!("_{unit}")) {
                let want = if kind == MetricKind::Counter { format!("_{unit}_total") } else { format!("_{unit}") };
                let msg = format!("'{name}' declares unit {unit}, so its name must end in {want} (OpenMetrics requires it); rename it or fix the unit");
                self.error(at.path, at.ptr("unit"), msg);
            }
        }
        if f.created.is_some() && !matches!(kind, MetricKind::Counter | MetricKind::Histogram | MetricKind::Summary) {
            let msg =
                format!("created applies to counters, histograms and summaries; a {} has no start", kind.as_str());
            self.error(at.path, at.ptr("created"), msg);
        }
    }
}
