//! Series as a test writes them (`name{label="value"} 1`, one a line, as promtool's `exp_samples`)
//! and as an evaluation gives them, compared as sets with a readable diff.
//!
//! Label order is not significant and values compare as numbers, so `1` and `1.0` agree; the diff
//! prints each series with its labels sorted and its value as the exposition does.

use std::collections::BTreeMap;

use crate::eval::exposition::{format_value, Family};

/// One series: its name, its labels by name, its value.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Series {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A family name with label equalities: which series a block of expected series covers.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Selector {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

impl Selector {
    pub(super) fn matches(&self, s: &Series) -> bool {
        s.name == self.name && self.labels.iter().all(|(k, v)| s.labels.get(k) == Some(v))
    }
}

impl Series {
    /// The series as the exposition prints it, labels sorted.
    pub(super) fn text(&self) -> String {
        format!("{}{} {}", self.name, labels_text(&self.labels), format_value(self.value))
    }

    fn same(&self, other: &Series) -> bool {
        self.name == other.name && self.labels == other.labels && same_value(self.value, other.value)
    }
}

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")))
        .collect();
    format!("{{{}}}", pairs.join(","))
}

fn same_value(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// Every series of `families`.
pub(super) fn of_families(families: &[Family]) -> Vec<Series> {
    families
        .iter()
        .flat_map(|f| {
            f.samples.iter().map(|s| Series {
                name: f.name.clone(),
                labels: s.labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                value: s.value,
            })
        })
        .collect()
}

/// Reads exposition lines (comments and blank lines skipped); the error names the line.
pub(super) fn parse_lines(text: &str) -> Result<Vec<Series>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (selector, rest) = parse_selector_prefix(line).map_err(|m| format!("line {}: {m}", n + 1))?;
        let value = parse_value(rest.trim()).ok_or_else(|| {
            format!(
                "line {}: '{}' is not a sample value; write a number, NaN, +Inf or -Inf after the series",
                n + 1,
                rest.trim()
            )
        })?;
        out.push(Series { name: selector.name, labels: selector.labels, value });
    }
    Ok(out)
}

/// Reads a selector: `name` or `name{label="value",...}`.
pub(super) fn parse_selector(text: &str) -> Result<Selector, String> {
    let (selector, rest) = parse_selector_prefix(text.trim())?;
    if !rest.trim().is_empty() {
        return Err(format!("'{}' follows the selector; a selector is name{{label=\"value\",...}}", rest.trim()));
    }
    Ok(selector)
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        t => t.parse().ok(),
    }
}

/// A name and its optional `{...}` at the start of `text`, and what follows.
fn parse_selector_prefix(text: &str) -> Result<(Selector, &str), String> {
    let end = text.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).unwrap_or(text.len());
    if end == 0 {
        return Err(format!("'{text}' does not start with a metric name"));
    }
    let name = text[..end].to_string();
    let mut rest = &text[end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            rest = rest.trim_start().trim_start_matches(',').trim_start();
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (label, value, after) = parse_label(rest)?;
            labels.insert(label, value);
            rest = after;
        }
    }
    Ok((Selector { name, labels }, rest))
}

/// `label="value"` at the start of `text` (escapes `\\`, `\"`, `\n`), and what follows.
fn parse_label(text: &str) -> Result<(String, String, &str), String> {
    let eq = text.find('=').ok_or_else(|| format!("'{text}': a label is written label=\"value\""))?;
    let label = text[..eq].trim().to_string();
    let after = text[eq + 1..].trim_start();
    let body =
        after.strip_prefix('"').ok_or_else(|| format!("the value of label '{label}' must be in double quotes"))?;
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((label, value, &body[i + 1..])),
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, other)) => value.push(other),
                None => break,
            },
            c => value.push(c),
        }
    }
    Err(format!("the value of label '{label}' has no closing double quote"))
}

/// The lines that differ between `expected` and `actual`: `- ` for expected and missing (or with
/// another value), `+ ` for given and not expected; sorted by series. Empty when they agree.
pub(super) fn diff(expected: &[Series], actual: &[Series]) -> Vec<String> {
    // Sorted by series, the expected line of a series before the actual one.
    let mut lines: Vec<(String, u8, String)> = Vec::new();
    let key = |s: &Series| format!("{}{}", s.name, labels_text(&s.labels));
    for e in expected {
        if !actual.iter().any(|a| a.same(e)) {
            lines.push((key(e), 0, format!("- {}", e.text())));
        }
    }
    for a in actual {
        if !expected.iter().any(|e| e.same(a)) {
            lines.push((key(a), 1, format!("+ {}", a.text())));
        }
    }
    lines.sort();
    lines.into_iter().map(|(_, _, line)| line).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_and_differ_readably() {
        let exp = parse_lines("# c\nkanary_up{type=\"rpm\", tested_cluster=\"a\\\"b\"} 1\nx 2.0\n").unwrap();
        assert_eq!(exp[0].text(), "kanary_up{tested_cluster=\"a\\\"b\",type=\"rpm\"} 1");
        let act = parse_lines("kanary_up{tested_cluster=\"a\\\"b\",type=\"rpm\"} 0\nx 2\ny 1").unwrap();
        assert_eq!(
            diff(&exp, &act),
            vec![
                "- kanary_up{tested_cluster=\"a\\\"b\",type=\"rpm\"} 1",
                "+ kanary_up{tested_cluster=\"a\\\"b\",type=\"rpm\"} 0",
                "+ y 1",
            ]
        );
        assert!(parse_lines("x{a=\"1\"}").unwrap_err().contains("line 1"));
        assert!(parse_lines("x{a=1} 1").unwrap_err().contains("double quotes"));
        let sel = parse_selector("kanary_up{type=\"rpm\"}").unwrap();
        assert!(sel.matches(&act[0]));
        assert!(!sel.matches(&act[1]));
        assert!(parse_selector("x 1").is_err());
    }
}
