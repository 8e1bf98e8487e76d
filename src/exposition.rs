//! The Prometheus text exposition format (0.0.4), rendered by hand.
//!
//! Families change shape with every evaluation (targets and label values come from rows), which the
//! `prometheus` crate's static collectors do not model; and a snapshot is rendered once and served
//! many times, so rendering straight into bytes is both simpler and faster. Label names are sorted and
//! series are sorted by label values, as Prometheus's own client libraries do, so the output is stable
//! and comparable byte for byte.

use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Gauge,
    Counter,
    Untyped,
}

impl MetricType {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Gauge => "gauge",
            MetricType::Counter => "counter",
            MetricType::Untyped => "untyped",
        }
    }
}

/// One series: label pairs (any order) and a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// A metric family: every series of one name.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub kind: MetricType,
    pub samples: Vec<Sample>,
}

impl Family {
    pub fn new(name: &str, help: &str, kind: MetricType) -> Family {
        Family { name: name.to_string(), help: help.to_string(), kind, samples: Vec::new() }
    }
}

/// Renders `families` in the given order, each family's series sorted.
pub fn render(families: &[Family]) -> Vec<u8> {
    let mut out = String::with_capacity(64 + families.iter().map(|f| f.samples.len() * 64).sum::<usize>());
    for family in families {
        render_family(&mut out, family);
    }
    out.into_bytes()
}

fn render_family(out: &mut String, family: &Family) {
    out.push_str("# HELP ");
    out.push_str(&family.name);
    out.push(' ');
    escape_help(out, &family.help);
    out.push('\n');
    let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind.as_str());

    let mut series: Vec<(Vec<(&str, &str)>, f64)> = family
        .samples
        .iter()
        .map(|s| {
            let mut l: Vec<(&str, &str)> = s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            l.sort_unstable();
            (l, s.value)
        })
        .collect();
    series.sort_by(|a, b| a.0.cmp(&b.0));
    for (labels, value) in series {
        out.push_str(&family.name);
        if !labels.is_empty() {
            out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(k);
                out.push_str("=\"");
                escape_label_value(out, v);
                out.push('"');
            }
            out.push('}');
        }
        out.push(' ');
        out.push_str(&format_value(value));
        out.push('\n');
    }
}

fn escape_help(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_label_value(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Formats a sample value the way Go's client does for the common cases: integers without a
/// fraction, `NaN`, `+Inf`, `-Inf`, everything else in the shortest form that reads back exactly.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_sorted_and_escaped() {
        let mut f = Family::new("x_total", "Help with \\ and\nnewline", MetricType::Counter);
        f.samples.push(Sample { labels: vec![("b".into(), "2".into()), ("a".into(), "q\"uote".into())], value: 1.5 });
        f.samples.push(Sample { labels: vec![("b".into(), "1".into()), ("a".into(), "q\"uote".into())], value: 2.0 });
        let text = String::from_utf8(render(&[f])).unwrap();
        assert_eq!(
            text,
            "# HELP x_total Help with \\\\ and\\nnewline\n# TYPE x_total counter\n\
             x_total{a=\"q\\\"uote\",b=\"1\"} 2\nx_total{a=\"q\\\"uote\",b=\"2\"} 1.5\n"
        );
    }

    #[test]
    fn values_format_like_go() {
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(-3.0), "-3");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
    }
}
