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

/// The two families of one health signal (its up gauge and its error gauge, labelled by `reason`) and
/// how many targets it judges, so that an empty family never passes for "every target".
#[derive(Debug, Clone)]
pub struct Signal {
    up: String,
    error: String,
    targets: usize,
}

impl Signal {
    pub fn new(up: &str, error: &str, targets: usize) -> Signal {
        Signal { up: up.to_string(), error: error.to_string(), targets }
    }

    /// `NAME_up` and `NAME_error`, as the tests' probe rules name their families.
    pub fn probe(name: &str, targets: usize) -> Signal {
        Signal::new(&format!("{name}_up"), &format!("{name}_error"), targets)
    }
}

/// Labels as printed, `{a="x",b="y"}`.
fn printed(l: &Labels) -> String {
    let pairs: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", pairs.join(","))
}

/// What keeps `signal` from being fail-safe with `reason` in `m`, or None when it is: it has its
/// number of targets, each with up=1, its `reason` error 1 and every other reason 0, and the error
/// family names no other target.
pub fn fail_safe_mismatch(m: &Exposition, signal: &Signal, reason: &str) -> Option<String> {
    let none = BTreeMap::new();
    let up = m.samples.get(&signal.up).unwrap_or(&none);
    let error = m.samples.get(&signal.error).unwrap_or(&none);
    let mut problems = Vec::new();
    if up.len() != signal.targets {
        problems.push(format!("{} has {} targets, expected {}", signal.up, up.len(), signal.targets));
    }
    // The error series by target (the labels without `reason`): reason -> value.
    let mut by_target: BTreeMap<Labels, BTreeMap<String, f64>> = BTreeMap::new();
    for (l, v) in error {
        let mut target = l.clone();
        let Some(r) = target.remove("reason") else {
            problems.push(format!("{}{} has no reason label", signal.error, printed(l)));
            continue;
        };
        by_target.entry(target).or_default().insert(r, *v);
    }
    for (target, v) in up {
        if *v != 1.0 {
            problems.push(format!("{}{} is {v}, not 1", signal.up, printed(target)));
        }
        let reasons = by_target.remove(target).unwrap_or_default();
        if reasons.get(reason) != Some(&1.0) {
            problems.push(format!(
                "{}{} has {reason:?} at {:?}, not 1",
                signal.error,
                printed(target),
                reasons.get(reason)
            ));
        }
        for (other, v) in reasons.iter().filter(|(r, v)| r.as_str() != reason && **v != 0.0) {
            problems.push(format!("{}{} has {other:?} at {v}, not 0", signal.error, printed(target)));
        }
    }
    for target in by_target.keys() {
        problems.push(format!("{}{} has no {} series", signal.error, printed(target), signal.up));
    }
    (!problems.is_empty()).then(|| problems.join("\n"))
}

/// Whether `signal` is fail-safe with `reason` in `m` (see [`fail_safe_mismatch`]), for waits.
pub fn is_fail_safe(m: &Exposition, signal: &Signal, reason: &str) -> bool {
    fail_safe_mismatch(m, signal, reason).is_none()
}

/// Asserts that `signal` is fail-safe with `reason` in `m` (see [`fail_safe_mismatch`]), naming every
/// series that is not and printing the signal's families.
pub fn assert_fail_safe(m: &Exposition, signal: &Signal, reason: &str) {
    if let Some(problems) = fail_safe_mismatch(m, signal, reason) {
        panic!(
            "{} is not fail-safe with reason {reason:?}:\n{problems}\n---\n{}{}",
            signal.up,
            m.family_text(&signal.up),
            m.family_text(&signal.error)
        );
    }
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
    let e = Exposition::parse(&String::from_utf8(exposition::text::render(&[f])).unwrap());
    assert_eq!(e.samples["x"][&labels(&[("a", "q\"u,o=te\\"), ("b", "")])], 1.5);
}

/// The fail-safe check passes on a fail-safe signal and names each way a signal can fall short.
#[test]
fn fail_safe_check_names_what_is_missing() {
    let signal = Signal::probe("p", 2);
    let text = |up_b: &str, failed_b: &str, stale_b: &str| {
        format!(
            "p_up{{target=\"a\"}} 1\np_up{{target=\"b\"}} {up_b}\n\
             p_error{{reason=\"failed\",target=\"a\"}} 1\np_error{{reason=\"stale\",target=\"a\"}} 0\n\
             p_error{{reason=\"failed\",target=\"b\"}} {failed_b}\np_error{{reason=\"stale\",target=\"b\"}} {stale_b}\n"
        )
    };
    assert_fail_safe(&Exposition::parse(&text("1", "1", "0")), &signal, "failed");
    let mismatch = |t: &str, reason: &str| fail_safe_mismatch(&Exposition::parse(t), &signal, reason).unwrap();
    assert!(mismatch(&text("0", "1", "0"), "failed").contains("p_up{target=\"b\"} is 0, not 1"));
    assert!(mismatch(&text("1", "0", "0"), "failed").contains("has \"failed\" at Some(0.0), not 1"));
    assert!(mismatch(&text("1", "1", "1"), "failed").contains("has \"stale\" at 1, not 0"));
    assert!(mismatch(&text("1", "1", "0"), "stale").contains("not 1"));
    assert!(mismatch("", "failed").contains("p_up has 0 targets, expected 2"));
    let extra = format!("{}p_error{{reason=\"failed\",target=\"c\"}} 1\n", text("1", "1", "0"));
    assert!(mismatch(&extra, "failed").contains("{target=\"c\"} has no p_up series"));
}
