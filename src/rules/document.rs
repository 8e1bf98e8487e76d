//! One YAML document read with positions, for every file the exporter reads: rules files and rule
//! test files (`--test-rules`) alike, so both get the same `FILE:LINE:COL` diagnostics.
//!
//! Two parses: a position-keeping one ([`span`]) that also refuses nesting and alias expansion past
//! their limits before serde_yaml builds the document, and finds duplicate keys (which serde_yaml
//! resolves silently, last one wins); then serde_yaml's, whose syntax errors are worded for people.
//! A text serde_yaml accepts and the first parser does not merely has no positions.

use std::path::Path;

use super::diagnostic::Diagnostic;
use super::span::{self, SpanTree};
use super::{input, schema_errors};

/// A file's text as read: its document (`None` when it is not YAML the loader can take), its
/// positions, and what was wrong.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The document; `Some(Null)` for an empty file.
    pub value: Option<serde_json::Value>,
    /// Positions of every key and item, when the position-keeping parser read the file.
    pub spans: Option<SpanTree>,
    /// Where the position-keeping parser stopped on a text serde_yaml read: the position for
    /// diagnostics that have none.
    pub unpositioned: Option<(usize, usize)>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Reads `text` (the content of `path`) as one YAML document.
pub fn parse(path: &Path, text: &str) -> Parsed {
    let mut out = Parsed::default();
    if text.len() > input::MAX_FILE_BYTES {
        out.diagnostics.push(Diagnostic::error(path, "", input::too_large()));
        return out;
    }
    let spans = match span::parse(text) {
        Ok(parsed) => Some(parsed),
        Err(e) if e.limit => {
            out.diagnostics.push(Diagnostic::error(path, "", e.message).at(e.position.0, e.position.1));
            return out;
        }
        Err(e) => {
            out.unpositioned = Some(e.position);
            None
        }
    };
    let doc: serde_json::Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            out.diagnostics.push(syntax_error(path, text, &e));
            return out;
        }
    };
    if let Some((tree, duplicates)) = spans {
        for dup in duplicates {
            let msg = format!("duplicate key '{}' (first at line {}); give each key once", dup.key, dup.first.0);
            out.diagnostics.push(Diagnostic::error(path, dup.pointer, msg).at(dup.position.0, dup.position.1));
        }
        out.spans = Some(tree);
    }
    out.value = Some(doc);
    out
}

/// serde_yaml's error, at its position, or at a second document's `---`, or at the top.
fn syntax_error(path: &Path, text: &str, e: &serde_yaml::Error) -> Diagnostic {
    let d = Diagnostic::error(path, "", format!("invalid YAML: {}", yaml_message(e)));
    if let Some(loc) = e.location() {
        d.at(loc.line(), loc.column())
    } else if let Some(line) = second_document_line(text) {
        Diagnostic::error(path, "", "a rules file holds one YAML document; this '---' starts a second one").at(line, 1)
    } else {
        // serde_yaml said nowhere; the top of the file is better than no place at all.
        d.at(1, 1)
    }
}

/// Every problem `validator` (compiled from `schema`) finds in `doc`, worded for people, at most
/// `cap` errors; each with whether it is an unknown key (which building a rule ignores).
pub fn schema_problems(
    validator: &jsonschema::Validator,
    schema: &serde_json::Value,
    doc: &serde_json::Value,
    cap: usize,
) -> Vec<(schema_errors::SchemaProblem, bool)> {
    let mut out = Vec::new();
    for err in validator.iter_errors(doc).take(cap) {
        let unknown_key = matches!(err.kind(), jsonschema::error::ValidationErrorKind::AdditionalProperties { .. });
        out.extend(schema_errors::describe(schema, &err).into_iter().map(|p| (p, unknown_key)));
    }
    out
}

fn yaml_message(e: &serde_yaml::Error) -> String {
    // serde_yaml appends " at line X column Y" (printed in front instead), and sometimes what it was
    // parsing and where that began, which is often the line to fix (an unclosed bracket).
    let msg = e.to_string();
    let Some(i) = msg.find(" at line ") else { return msg };
    let context = msg[i..].split_once(", ").map(|(_, c)| c);
    match context {
        Some(c) => format!("{} ({c})", &msg[..i]),
        None => msg[..i].to_string(),
    }
}

/// The line of the `---` that starts a second YAML document, for serde_yaml's error without position.
fn second_document_line(text: &str) -> Option<usize> {
    let mut content_seen = false;
    for (n, line) in text.lines().enumerate() {
        let is_marker = line == "---" || line.starts_with("--- ");
        if is_marker && content_seen {
            return Some(n + 1);
        }
        let trimmed = line.trim();
        if !trimmed.is_empty() && !trimmed.starts_with('#') && !is_marker {
            content_seen = true;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_errors_keep_their_context_and_a_second_document_is_found() {
        let e = serde_yaml::from_str::<serde_json::Value>("a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(
            yaml_message(&e),
            "did not find expected ',' or ']' (while parsing a flow sequence at line 1 column 4)"
        );
        assert_eq!(second_document_line("# c\n---\na: 1\n---\nb: 2\n"), Some(4));
        assert_eq!(second_document_line("---\na: 1\n"), None);
    }
}
