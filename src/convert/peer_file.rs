//! A peer's configuration file as the converters read it, and what a conversion reports.
//!
//! The YAML is read twice, as the rules loader does: once into a value the converters walk (in the
//! file's own order), once into a [`SpanTree`] so that every warning names the line of the thing it
//! is about. Converters address nodes by JSON pointer, the same addressing the loader's diagnostics
//! use.

use std::path::{Path, PathBuf};

use serde_yaml::Value;

use crate::rules::span::{self, SpanTree};

/// A finished conversion: the rules file, what was left out, and the variables to set.
#[derive(Debug)]
pub struct Conversion {
    /// The rules file, starting with the schema modeline.
    pub rules_yaml: String,
    /// One per thing that could not be represented, or differs from the peer (also a comment in
    /// `rules_yaml`).
    pub warnings: Vec<Warning>,
    /// Environment variables the rules file reads, each with what to put in it.
    pub variables: Vec<Variable>,
}

impl Conversion {
    /// Whether everything converted (the command's exit status 0); differences do not count.
    pub fn is_complete(&self) -> bool {
        self.not_converted() == 0
    }

    /// How many things did not convert.
    pub fn not_converted(&self) -> usize {
        self.warnings.iter().filter(|w| w.kind == WarningKind::NotConverted).count()
    }
}

/// Where a message should say a file is, as given on the command line.
fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// A peer file that cannot be converted at all (unreadable, not YAML, not the format's shape).
#[derive(Debug)]
pub struct ConvertError {
    pub message: String,
}

impl std::fmt::Display for ConvertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConvertError {}

/// What a warning says of the peer's setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarningKind {
    /// The rules file does not represent it (the command exits 1).
    NotConverted,
    /// Converted, but the rules behave otherwise than the peer does in a case the warning names.
    Differs,
}

/// Something of the peer's configuration the rules file does not represent, or represents with a
/// difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub kind: WarningKind,
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl WarningKind {
    fn wording(self) -> &'static str {
        match self {
            WarningKind::NotConverted => "not converted",
            WarningKind::Differs => "differs from the peer",
        }
    }
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: warning: {}: {}", self.file.display(), self.line, self.kind.wording(), self.message)
    }
}

/// An environment variable the converted rules read, and what the operator must put in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    pub meaning: String,
}

impl std::fmt::Display for Variable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "set {}: {}", self.name, self.meaning)
    }
}

/// One peer file: its path, its document and the positions of its nodes.
pub(super) struct PeerFile {
    pub(super) path: PathBuf,
    pub(super) doc: Value,
    spans: SpanTree,
}

impl PeerFile {
    /// Reads and parses `path`; a file that is not YAML is a [`ConvertError`] naming it.
    pub(super) fn read(path: &Path) -> Result<PeerFile, ConvertError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConvertError { message: format!("{}: cannot read the file: {e}", shown(path)) })?;
        let doc: Value = serde_yaml::from_str(&text).map_err(|e| ConvertError {
            message: format!("{}: not a YAML document ({e}); expected the peer's configuration file", shown(path)),
        })?;
        // Positions are a help, not a requirement: a file serde_yaml reads but the span parser does not
        // gets line 1 for its warnings.
        let spans = span::parse(&text).map(|(tree, _)| tree).unwrap_or_default();
        Ok(PeerFile { path: path.to_path_buf(), doc, spans })
    }

    /// The 1-based line of the node at `pointer` (its key for a mapping entry).
    pub(super) fn line(&self, pointer: &str) -> usize {
        self.spans.position(pointer).map_or(1, |(line, _)| line)
    }

    /// "FILE:LINE", for comments in the output.
    pub(super) fn at(&self, pointer: &str) -> String {
        format!("{}:{}", shown(&self.path), self.line(pointer))
    }

    /// A shape error at `pointer`: the conversion of this file stops.
    pub(super) fn shape_error(&self, pointer: &str, found: &str, expected: &str) -> ConvertError {
        ConvertError { message: format!("{}: {found}; expected {expected}", self.at(pointer)) }
    }
}

/// A node of a peer file: the file, the value there and its JSON pointer.
#[derive(Clone, Copy)]
pub(super) struct Node<'a> {
    pub(super) file: &'a PeerFile,
    pub(super) value: &'a Value,
    pub(super) pointer: &'a str,
}

impl<'a> Node<'a> {
    /// The whole document of `file`.
    pub(super) fn root(file: &'a PeerFile) -> Node<'a> {
        Node { file, value: &file.doc, pointer: "" }
    }
}

/// Segment of a JSON pointer for a mapping key.
pub(super) fn key_segment(key: &str) -> String {
    span::escape(key)
}

/// What a conversion collects on the way: warnings and variables.
#[derive(Default)]
pub(super) struct Report {
    warnings: Vec<Warning>,
    variables: Vec<Variable>,
}

impl Report {
    /// Records that the node at `pointer` of `file` is not represented, and returns the comment to
    /// put at its place in the output.
    pub(super) fn left_out(&mut self, file: &PeerFile, pointer: &str, message: impl Into<String>) -> String {
        self.warn(WarningKind::NotConverted, file, pointer, message.into())
    }

    /// Records that the node at `pointer` converted with a difference from the peer's behaviour,
    /// and returns the comment to put at its place.
    pub(super) fn differs(&mut self, file: &PeerFile, pointer: &str, message: impl Into<String>) -> String {
        self.warn(WarningKind::Differs, file, pointer, message.into())
    }

    fn warn(&mut self, kind: WarningKind, file: &PeerFile, pointer: &str, message: String) -> String {
        let comment = format!("{} ({}): {message}", kind.wording().to_ascii_uppercase(), file.at(pointer));
        self.warnings.push(Warning { kind, file: file.path.clone(), line: file.line(pointer), message });
        comment
    }

    /// Records a variable the output reads (once per name).
    pub(super) fn variable(&mut self, name: &str, meaning: impl Into<String>) {
        if !self.variables.iter().any(|v| v.name == name) {
            self.variables.push(Variable { name: name.to_string(), meaning: meaning.into() });
        }
    }

    pub(super) fn finish(self, rules_yaml: String) -> Conversion {
        Conversion { rules_yaml, warnings: self.warnings, variables: self.variables }
    }
}

/// Accessors on the peer's YAML values that converters share.
pub(super) trait ValueExt {
    /// The string at `key` of a mapping (numbers and booleans as written).
    fn text(&self, key: &str) -> Option<String>;
    /// The mapping entries at `key`, in file order.
    fn entries(&self, key: &str) -> Vec<(String, &Value)>;
    /// The sequence at `key` (empty when absent).
    fn items(&self, key: &str) -> Vec<&Value>;
    /// The strings of the sequence at `key`.
    fn strings(&self, key: &str) -> Vec<String>;
    /// The keys of a mapping, in file order.
    fn keys(&self) -> Vec<String>;
    /// The entries of a mapping, in file order.
    fn pairs(&self) -> Vec<(String, &Value)>;
}

/// A scalar as text: strings as they are, numbers and booleans as YAML prints them.
pub(super) fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl ValueExt for Value {
    fn text(&self, key: &str) -> Option<String> {
        self.get(key).and_then(scalar_text)
    }

    fn entries(&self, key: &str) -> Vec<(String, &Value)> {
        self.get(key).map(|v| v.pairs()).unwrap_or_default()
    }

    fn items(&self, key: &str) -> Vec<&Value> {
        match self.get(key) {
            Some(Value::Sequence(s)) => s.iter().collect(),
            _ => Vec::new(),
        }
    }

    fn strings(&self, key: &str) -> Vec<String> {
        self.items(key).into_iter().filter_map(scalar_text).collect()
    }

    fn keys(&self) -> Vec<String> {
        match self {
            Value::Mapping(m) => m.keys().filter_map(scalar_text).collect(),
            _ => Vec::new(),
        }
    }

    fn pairs(&self) -> Vec<(String, &Value)> {
        match self {
            Value::Mapping(m) => m.iter().filter_map(|(k, v)| scalar_text(k).map(|k| (k, v))).collect(),
            _ => Vec::new(),
        }
    }
}

/// Warns about every key of the mapping at `pointer` that is not in `known`: a key the converter
/// does not know is a setting it would otherwise drop silently.
pub(super) fn unknown_keys(report: &mut Report, node: Node<'_>, known: &[&str]) -> Vec<String> {
    let Node { file, value, pointer } = node;
    value
        .keys()
        .into_iter()
        .filter(|k| !known.contains(&k.as_str()))
        .map(|k| {
            report.left_out(
                file,
                &format!("{pointer}/{}", key_segment(&k)),
                format!("key '{k}' is not one this converter knows; it has no counterpart here"),
            )
        })
        .collect()
}

/// A name made into an identifier (`[A-Za-z_][A-Za-z0-9_]*`): other characters become `_`.
pub(super) fn identifier(name: &str) -> String {
    let mut out: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}
