//! The loader's bookkeeping ([`Ctx`]) and the reading of one file: YAML, positions, the schema,
//! then each database and rule handed to its builder.
//!
//! Each rule and database is read on its own, so one bad rule does not hide the others. Schema errors
//! are reported for the whole file; a semantic finding at a place the schema already reported is
//! dropped, so each mistake has one message.

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::diagnostic::Diagnostic;
use super::diagnostic::MAX_DIAGNOSTICS_PER_FILE;
use super::model::RuleSet;
use super::schema::CompiledSchema;
use super::span::{self, SpanTree};
use super::{document, spec};

/// Looks up an environment variable by name.
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What a load may consult besides the files.
#[derive(Clone)]
pub struct LoadOptions {
    /// Looks up `${VAR}`; the process environment by default, a map in tests.
    pub env: EnvLookup,
    /// An unset `${VAR}` is an error (the exporter) rather than a warning (`--check-rules`).
    pub unset_env_is_error: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { env: Arc::new(|name| std::env::var(name).ok()), unset_env_is_error: true }
    }
}

/// What a load has found and built so far, across files.
pub(super) struct Ctx<'a> {
    pub(super) opts: &'a LoadOptions,
    pub(super) diags: Vec<Diagnostic>,
    pub(super) set: RuleSet,
    /// Rule name → file and pointer of the rule that declared it first.
    pub(super) rule_names: BTreeMap<String, (PathBuf, String)>,
    /// Metric name → rule (and its file) that declared it first.
    pub(super) metric_names: BTreeMap<String, (String, PathBuf)>,
    /// Positions in each file read so far, for messages that point at another place.
    pub(super) spans: BTreeMap<PathBuf, SpanTree>,
    /// Files serde_yaml reads but the position-keeping parser does not: where that parser stopped,
    /// the position given to their diagnostics that have none.
    pub(super) unpositioned: BTreeMap<PathBuf, (usize, usize)>,
    /// The pointer of each rule in `set.rules`, in the same order.
    pub(super) rule_pointers: Vec<String>,
    /// Per file, the places the schema reported a problem at (unknown keys aside). A set, so that
    /// asking about one place costs a few lookups however many problems a file has.
    pub(super) schema_pointers: BTreeMap<PathBuf, BTreeSet<String>>,
    /// The rules schema, compiled at the first file of this load and dropped with it.
    schema: OnceCell<CompiledSchema>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(opts: &'a LoadOptions) -> Ctx<'a> {
        Ctx {
            opts,
            diags: Vec::new(),
            set: RuleSet::default(),
            rule_names: BTreeMap::new(),
            metric_names: BTreeMap::new(),
            spans: BTreeMap::new(),
            unpositioned: BTreeMap::new(),
            rule_pointers: Vec::new(),
            schema_pointers: BTreeMap::new(),
            schema: OnceCell::new(),
        }
    }
}

impl Ctx<'_> {
    pub(super) fn error(&mut self, file: &Path, pointer: impl Into<String>, msg: impl Into<String>) {
        self.diags.push(Diagnostic::error(file, pointer, msg));
    }

    pub(super) fn warning(&mut self, file: &Path, pointer: impl Into<String>, msg: impl Into<String>) {
        self.diags.push(Diagnostic::warning(file, pointer, msg));
    }

    pub(super) fn file(&mut self, path: &Path, text: &str) {
        let Some(doc) = self.parse_file(path, text) else { return };
        self.schema_check(path, &doc);
        self.build_items(path, &doc);
    }

    /// The file's document, positions and duplicate keys recorded; `None` (reported) when it is
    /// not a YAML document the loader can take.
    fn parse_file(&mut self, path: &Path, text: &str) -> Option<serde_json::Value> {
        let parsed = document::parse(path, text);
        self.diags.extend(parsed.diagnostics);
        if let Some(at) = parsed.unpositioned {
            self.unpositioned.insert(path.to_path_buf(), at);
        }
        if let Some(tree) = parsed.spans {
            self.spans.insert(path.to_path_buf(), tree);
        }
        let doc = parsed.value?;
        if doc.is_null() {
            let msg = "the rules file is empty; it must start with `version: 1`";
            self.diags.push(Diagnostic::error(path, "", msg).at(1, 1));
            return None;
        }
        Some(doc)
    }

    /// Every schema error of the file; the places they were reported are remembered.
    fn schema_check(&mut self, path: &Path, doc: &serde_json::Value) {
        // Schema errors are reported for the whole file. Every rule and database that still
        // deserializes then gets the semantic checks as well, so one run reports everything; a semantic
        // finding at a place the schema already reported is dropped, so each mistake has one message.
        // (Unknown keys do not count: building a rule ignores them.)
        let mut reported = BTreeSet::new();
        // Past the cap nothing is shown (see `cap_per_file`); a few more keep the order right.
        let cap = MAX_DIAGNOSTICS_PER_FILE + 1;
        let schema = self.schema.get_or_init(CompiledSchema::compile);
        let problems = document::schema_problems(&schema.validator, &schema.value, doc, cap);
        for (problem, unknown_key) in problems {
            if !unknown_key && !problem.pointer.is_empty() {
                reported.insert(problem.pointer.clone());
            }
            self.error(path, problem.pointer, problem.message);
        }
        self.schema_pointers.insert(path.to_path_buf(), reported);
    }

    /// Every database, endpoint and rule that deserializes, built with its semantic checks.
    fn build_items(&mut self, path: &Path, doc: &serde_json::Value) {
        if let Some(databases) = doc.get("databases").and_then(|d| d.as_object()) {
            for (name, value) in databases {
                let pointer = format!("/databases/{}", span::escape(name));
                let before = self.diags.len();
                if let Some(spec) = self.item::<spec::DatabaseSpec>(path, &pointer, value) {
                    self.database(path, name.clone(), spec);
                }
                self.drop_reported(path, before);
            }
        }
        if let Some(endpoints) = doc.get("endpoints").and_then(|d| d.as_object()) {
            for (name, value) in endpoints {
                let pointer = format!("/endpoints/{}", span::escape(name));
                let before = self.diags.len();
                if let Some(spec) = self.item::<spec::EndpointSpec>(path, &pointer, value) {
                    self.endpoint(path, name.clone(), spec);
                }
                self.drop_reported(path, before);
            }
        }
        if let Some(signals) = doc.get("signals").and_then(|s| s.as_array()) {
            for (i, value) in signals.iter().enumerate() {
                let pointer = format!("/signals/{i}");
                let before = self.diags.len();
                if let Some(spec) = self.item::<spec::SignalSpec>(path, &pointer, value) {
                    self.signal(path, i, spec);
                    self.rule_built(&pointer);
                }
                self.drop_reported(path, before);
            }
        }
        if let Some(metrics) = doc.get("metrics").and_then(|m| m.as_array()) {
            for (i, value) in metrics.iter().enumerate() {
                let pointer = format!("/metrics/{i}");
                let before = self.diags.len();
                if let Some(spec) = self.item::<spec::MetricRuleSpec>(path, &pointer, value) {
                    self.metric_rule(path, i, spec);
                    self.rule_built(&pointer);
                }
                self.drop_reported(path, before);
            }
        }
    }

    /// Whether the schema reported a problem at `pointer` of `path` or inside it.
    pub(super) fn schema_reported(&self, path: &Path, pointer: &str) -> bool {
        // `pointer` itself or one of its parents: one lookup per segment.
        self.schema_pointers.get(path).is_some_and(|reported| {
            pointer.char_indices().filter(|&(i, c)| c == '/' && i > 0).any(|(i, _)| reported.contains(&pointer[..i]))
                || reported.contains(pointer)
        })
    }

    /// Drops the diagnostics found since `before` at places of `path` the schema already reported.
    fn drop_reported(&mut self, path: &Path, before: usize) {
        let later: Vec<Diagnostic> = self.diags.drain(before..).collect();
        for d in later {
            if !(d.file == path && self.schema_reported(path, &d.pointer)) {
                self.diags.push(d);
            }
        }
    }

    /// The typed spec of one rule or database. When it does not deserialize, the schema has said why
    /// (else the mismatch between schema and spec is reported here).
    fn item<T: serde::de::DeserializeOwned>(
        &mut self,
        path: &Path,
        pointer: &str,
        value: &serde_json::Value,
    ) -> Option<T> {
        match T::deserialize(value) {
            Ok(spec) => Some(spec),
            Err(e) => {
                // `pointer` itself or a place inside it: those sort right after `pointer/`.
                let inside = format!("{pointer}/");
                let within = |reported: &BTreeSet<String>| {
                    reported.contains(pointer)
                        || reported.range(inside.clone()..).next().is_some_and(|r| r.starts_with(&inside))
                };
                if !self.schema_pointers.get(path).is_some_and(within) {
                    self.error(path, pointer, format!("unexpected structure: {e}"));
                }
                None
            }
        }
    }

    /// Records the pointer of the rule just built, for messages about it after all files are read.
    fn rule_built(&mut self, pointer: &str) {
        while self.rule_pointers.len() < self.set.rules.len() {
            self.rule_pointers.push(pointer.to_string());
        }
    }
}
