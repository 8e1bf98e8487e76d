//! The one parser of the Prometheus text format the tests read: every sample both under its series as
//! printed (`name{a="x",b="y"}`) and under its family and label set. It panics on a line it cannot
//! read and on a series that appears twice, so every parse also checks the exposition.

use std::collections::BTreeMap;

/// Label name → value.
pub type Labels = BTreeMap<String, String>;
/// Metric name → label set → value.
pub type Samples = BTreeMap<String, BTreeMap<Labels, f64>>;

/// A parsed exposition and its text.
#[derive(Debug, Clone)]
pub struct Exposition {
    pub text: String,
    /// Series as printed → value.
    pub series: BTreeMap<String, f64>,
    /// Family → label set → value.
    pub samples: Samples,
}

impl Exposition {
    pub fn parse(text: &str) -> Exposition {
        let mut series = BTreeMap::new();
        let mut samples = Samples::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {line:?}"));
            let v = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                "NaN" => f64::NAN,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            assert!(series.insert(key.to_string(), v).is_none(), "duplicate series {key} in:\n{text}");
            let (name, labels) = match key.split_once('{') {
                None => (key.to_string(), Labels::new()),
                Some((name, rest)) => (name.to_string(), parse_labels(rest.strip_suffix('}').expect("closing brace"))),
            };
            let previous = samples.entry(name).or_default().insert(labels, v);
            assert!(previous.is_none(), "series twice: {line}");
        }
        Exposition { text: text.to_string(), series, samples }
    }

    /// The value of a series as printed.
    pub fn value(&self, key: &str) -> Option<f64> {
        self.series.get(key).copied()
    }

    /// The lines (comments included) of the families whose name starts with `prefix`.
    pub fn family_text(&self, prefix: &str) -> String {
        let mut out = String::new();
        for line in self.text.lines() {
            let name = line.trim_start_matches("# HELP ").trim_start_matches("# TYPE ");
            if name.starts_with(prefix) {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

fn parse_labels(mut s: &str) -> Labels {
    let mut labels = Labels::new();
    while !s.is_empty() {
        let (name, rest) = s.split_once("=\"").expect("label=\"");
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().expect("closing quote") {
                (_, '\\') => match chars.next().expect("escape").1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.insert(name.to_string(), value);
        s = rest[end + 1..].strip_prefix(',').unwrap_or(&rest[end + 1..]);
    }
    labels
}

/// A label set from pairs.
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The value of one series, panicking with the family's series when it is missing.
pub fn value(samples: &Samples, name: &str, l: &[(&str, &str)]) -> f64 {
    let family = samples.get(name).unwrap_or_else(|| panic!("no family {name}; have {:?}", samples.keys()));
    *family.get(&labels(l)).unwrap_or_else(|| panic!("no series {name}{l:?}; have {:?}", family.keys()))
}

/// The exposition renderer and the parser above agree (guards the parser itself).
#[test]
fn parser_reads_what_the_renderer_writes() {
    use super::api::exposition;
    let mut f = exposition::Family::new("x", "h", exposition::MetricType::Gauge);
    f.samples.push(exposition::Sample {
        labels: vec![("a".into(), "q\"u,o=te\\".into()), ("b".into(), "".into())],
        value: 1.5,
    });
    let e = Exposition::parse(&String::from_utf8(exposition::render(&[f])).unwrap());
    assert_eq!(e.samples["x"][&labels(&[("a", "q\"u,o=te\\"), ("b", "")])], 1.5);
}
