//! The exposition formats: the Prometheus text format 0.0.4 ([`text`]) and OpenMetrics 1.0
//! ([`openmetrics`]), rendered by hand from one model of families.
//!
//! Families change shape with every evaluation (targets and label values come from rows), which the
//! `prometheus` crate's static collectors do not model; and a snapshot is rendered once and served
//! many times, so rendering straight into bytes is both simpler and faster. Label names are sorted and
//! series are sorted by label values, as Prometheus's own client libraries do, so the output is stable
//! and comparable byte for byte. Both formats walk the same families the same way (`render.rs`); they
//! differ only in the metadata lines, a few type names and OpenMetrics' `_created` series and `# EOF`.
//! So [`render_exposed`] renders the text format once and describes OpenMetrics as its own metadata
//! lines around runs of the text's series lines: a snapshot serves both formats for little more
//! than the memory of one.

mod family;
mod render;

pub mod openmetrics;
pub mod text;

pub use family::{Distribution, Family, Format, LabelValueInterner, MetricType, Sample, Text};
pub use render::{format_value, Exposed, Piece};

/// `families` in the text format, and OpenMetrics as pieces of it (see [`Exposed`]): what a
/// snapshot keeps of one evaluation.
pub fn render_exposed(families: &[Family]) -> Exposed {
    render::render_exposed(families, &text::dialect(), &openmetrics::dialect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_sorted_and_escaped() {
        let mut f = Family::new("x_total", "Help with \\ and\nnewline", MetricType::Counter);
        f.samples.push(Sample { labels: vec![("b".into(), "2".into()), ("a".into(), "q\"uote".into())], value: 1.5 });
        f.samples.push(Sample { labels: vec![("b".into(), "1".into()), ("a".into(), "q\"uote".into())], value: 2.0 });
        let text = String::from_utf8(text::render(&[f])).unwrap();
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

    /// The straightforward renderer this module had first: the reference for the fast one.
    fn reference_render(families: &[Family]) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for family in families {
            let help = family.help.replace('\\', "\\\\").replace('\n', "\\n");
            let _ = writeln!(out, "# HELP {} {help}", family.name);
            let _ = writeln!(out, "# TYPE {} {}", family.name, text::type_name(family.kind));
            let mut series: Vec<(Vec<(&str, &str)>, f64)> = family
                .samples
                .iter()
                .map(|s| {
                    let mut l: Vec<(&str, &str)> = s.labels.iter().map(|(k, v)| (&**k, &**v)).collect();
                    l.sort_unstable();
                    (l, s.value)
                })
                .collect();
            series.sort_by(|a, b| a.0.cmp(&b.0));
            for (labels, value) in series {
                out.push_str(&family.name);
                if !labels.is_empty() {
                    let pairs: Vec<String> = labels
                        .iter()
                        .map(|(k, v)| {
                            format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('\n', "\\n").replace('"', "\\\""))
                        })
                        .collect();
                    let _ = write!(out, "{{{}}}", pairs.join(","));
                }
                let _ = writeln!(out, " {}", format_value(value));
            }
        }
        out
    }

    #[test]
    fn matches_the_reference_renderer() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let values = ["a", "b", "a\"q", "x\\y", "line\nbreak", "", "zz", "ä"];
        let names = ["job", "instance", "reason", "a", "le"];
        let mut families = Vec::new();
        for f in 0..6 {
            let mut fam = Family::new(&format!("m{f}"), "Help \\ with\nlines", MetricType::Gauge);
            for _ in 0..300 {
                let count = next(4) as usize;
                let mut labels: Vec<(String, String)> = Vec::new();
                for _ in 0..count {
                    let name = names[next(names.len() as u64) as usize];
                    if f < 5 && labels.iter().any(|(k, _)| k == name) {
                        continue; // family 5 keeps repeated names: invalid, but rendered all the same
                    }
                    labels.push((name.to_string(), values[next(values.len() as u64) as usize].to_string()));
                }
                if f % 2 == 0 {
                    labels.reverse();
                }
                let value = [0.0, 1.0, -3.0, 0.25, 1e20, f64::NAN, f64::INFINITY, 1.0 / 3.0][next(8) as usize];
                fam.samples.push(Sample::owned(labels, value));
            }
            families.push(fam);
        }
        families.push(Family::new("empty", "", MetricType::Counter));
        let fast = String::from_utf8(text::render(&families)).unwrap();
        assert_eq!(fast, reference_render(&families));
    }

    /// Families large enough that OpenMetrics shares runs of the text's bytes, around families that
    /// share none (every kind, `_created` lines included).
    fn large_and_every_kind() -> Vec<Family> {
        let mut families = every_kind();
        for f in 0..2 {
            let mut fam = Family::new(&format!("big{f}_total"), "Big.", MetricType::Counter);
            for i in 0..3000 {
                fam.samples.push(Sample { labels: labels(&[("pod", &format!("p{i:05}"))]), value: i as f64 });
            }
            if f == 1 {
                fam.created = (0..3000).map(|i| if i % 2 == 0 { f64::NAN } else { 1e9 + i as f64 }).collect();
            }
            families.insert(2 * f + 1, fam);
        }
        families
    }

    #[test]
    fn exposed_is_both_formats_and_openmetrics_shares_the_text_series() {
        for families in [every_kind(), large_and_every_kind(), Vec::new()] {
            let exposed = render_exposed(&families);
            assert_eq!(exposed.text, text::render(&families));
            assert_eq!(exposed.openmetrics_bytes(), openmetrics::render(&families));
        }
        let exposed = render_exposed(&large_and_every_kind());
        let shared: Vec<&std::ops::Range<usize>> = exposed
            .openmetrics
            .iter()
            .filter_map(|p| match p {
                Piece::Text(r) => Some(r),
                Piece::Own(_) => None,
            })
            .collect();
        // The counter without `_created` is shared; the one with them is OpenMetrics' own.
        assert_eq!(shared.len(), 1, "{shared:?}");
        assert!(shared[0].len() > 3000 * 20);
        let own: usize = exposed.openmetrics.iter().map(|p| if let Piece::Own(b) = p { b.len() } else { 0 }).sum();
        assert!(own < exposed.text.len(), "own {own} of {}", exposed.text.len());
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<(Text, Text)> {
        pairs.iter().map(|(k, v)| (Text::from(*k), Text::from(*v))).collect()
    }

    fn every_kind() -> Vec<Family> {
        let mut c = Family::new("x_seconds_total", "Time \"spent\".", MetricType::Counter);
        c.unit = Some("seconds".into());
        c.samples.push(Sample { labels: labels(&[("db", "b")]), value: 2.0 });
        c.samples.push(Sample { labels: labels(&[("db", "a")]), value: 1.5 });
        c.created = vec![f64::NAN, 1_700_000_000.0];
        let mut i = Family::new("v_info", "Version.", MetricType::Info);
        i.samples.push(Sample { labels: labels(&[("version", "15")]), value: 1.0 });
        let mut s = Family::new("state", "State.", MetricType::StateSet);
        s.samples.push(Sample { labels: labels(&[("state", "b")]), value: 0.0 });
        s.samples.push(Sample { labels: labels(&[("state", "a")]), value: 1.0 });
        let mut h = Family::new("age_seconds", "Age.", MetricType::Histogram);
        h.unit = Some("seconds".into());
        h.distributions.push(Distribution {
            labels: labels(&[("db", "a")]),
            points: vec![(0.5, 1.0), (10.0, 3.0), (f64::INFINITY, 4.0)],
            sum: 30.5,
            count: 4.0,
            created: Some(5.0),
        });
        let mut q = Family::new("lat", "Latency.", MetricType::Summary);
        q.distributions.push(Distribution {
            labels: Vec::new(),
            points: vec![(0.5, 0.25), (0.99, 2.0)],
            sum: 10.0,
            count: 20.0,
            created: None,
        });
        let legacy = Family::new("legacy", "Legacy counter.", MetricType::Counter);
        vec![c, i, s, h, q, legacy]
    }

    #[test]
    fn text_format_of_every_kind() {
        let text = String::from_utf8(text::render(&every_kind())).unwrap();
        assert_eq!(
            text,
            "# HELP x_seconds_total Time \"spent\".\n# TYPE x_seconds_total counter\n\
             x_seconds_total{db=\"a\"} 1.5\nx_seconds_total{db=\"b\"} 2\n\
             # HELP v_info Version.\n# TYPE v_info gauge\nv_info{version=\"15\"} 1\n\
             # HELP state State.\n# TYPE state gauge\nstate{state=\"a\"} 1\nstate{state=\"b\"} 0\n\
             # HELP age_seconds Age.\n# TYPE age_seconds histogram\n\
             age_seconds_bucket{db=\"a\",le=\"0.5\"} 1\nage_seconds_bucket{db=\"a\",le=\"10\"} 3\n\
             age_seconds_bucket{db=\"a\",le=\"+Inf\"} 4\nage_seconds_sum{db=\"a\"} 30.5\nage_seconds_count{db=\"a\"} 4\n\
             # HELP lat Latency.\n# TYPE lat summary\nlat{quantile=\"0.5\"} 0.25\nlat{quantile=\"0.99\"} 2\n\
             lat_sum 10\nlat_count 20\n\
             # HELP legacy Legacy counter.\n# TYPE legacy counter\n"
        );
    }

    #[test]
    fn openmetrics_of_every_kind() {
        let om = String::from_utf8(openmetrics::render(&every_kind())).unwrap();
        assert_eq!(
            om,
            "# HELP x_seconds Time \\\"spent\\\".\n# TYPE x_seconds counter\n# UNIT x_seconds seconds\n\
             x_seconds_total{db=\"a\"} 1.5\nx_seconds_created{db=\"a\"} 1700000000\nx_seconds_total{db=\"b\"} 2\n\
             # HELP v Version.\n# TYPE v info\nv_info{version=\"15\"} 1\n\
             # HELP state State.\n# TYPE state stateset\nstate{state=\"a\"} 1\nstate{state=\"b\"} 0\n\
             # HELP age_seconds Age.\n# TYPE age_seconds histogram\n# UNIT age_seconds seconds\n\
             age_seconds_bucket{db=\"a\",le=\"0.5\"} 1\nage_seconds_bucket{db=\"a\",le=\"10\"} 3\n\
             age_seconds_bucket{db=\"a\",le=\"+Inf\"} 4\nage_seconds_sum{db=\"a\"} 30.5\nage_seconds_count{db=\"a\"} 4\n\
             age_seconds_created{db=\"a\"} 5\n\
             # HELP lat Latency.\n# TYPE lat summary\nlat{quantile=\"0.5\"} 0.25\nlat{quantile=\"0.99\"} 2\n\
             lat_sum 10\nlat_count 20\n\
             # HELP legacy Legacy counter.\n# TYPE legacy unknown\n"
        );
    }
}
