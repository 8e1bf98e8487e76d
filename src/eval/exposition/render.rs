//! The walk both formats share: families in the given order, each family's series sorted by their
//! label pairs, a histogram's or summary's points in order after their label set's, the metadata
//! lines as [`Format`] words them.
//!
//! The output is allocated once at its exact size (a first pass measures it), and series are sorted
//! through an index rather than copies of their labels, so rendering N series costs the output plus
//! a few bytes per series: a snapshot of 100,000 series renders in one 9 MB allocation.

use super::family::{Distribution, Family, Format, MetricType, Sample, Text};

/// Where rendered bytes go: the output, or a count of them.
trait Out {
    fn put(&mut self, bytes: &[u8]);
}

impl Out for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Counts what would be written.
struct Measure(usize);

impl Out for Measure {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

/// Lets `write!` format into an [`Out`].
struct Fmt<'a, O: Out>(&'a mut O);

impl<O: Out> std::fmt::Write for Fmt<'_, O> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put(s.as_bytes());
        Ok(())
    }
}

/// What a format decides: the name and `# TYPE` of a family's metadata lines, and the format (for
/// escaping, `# UNIT` and `_created`).
pub(super) struct Dialect {
    pub(super) format: Format,
    pub(super) meta: fn(&Family) -> (&str, &'static str),
}

/// Renders `families` in the given order in `dialect`, each family's series sorted. OpenMetrics'
/// `# EOF` is not written: the body ends after the exporter's own metrics.
pub(super) fn render(families: &[Family], dialect: &Dialect) -> Vec<u8> {
    let orders: Vec<FamilyOrder> = families.iter().map(FamilyOrder::of).collect();
    let mut measure = Measure(0);
    for (family, order) in families.iter().zip(&orders) {
        write_family(&mut measure, family, order, dialect);
    }
    let mut out = Vec::with_capacity(measure.0);
    for (family, order) in families.iter().zip(&orders) {
        write_family(&mut out, family, order, dialect);
    }
    debug_assert_eq!(out.len(), measure.0, "the measured length is exact");
    out
}

/// Anything with a label set.
trait Labelled {
    fn labels(&self) -> &[(Text, Text)];
}

impl Labelled for Sample {
    fn labels(&self) -> &[(Text, Text)] {
        &self.labels
    }
}

impl Labelled for Distribution {
    fn labels(&self) -> &[(Text, Text)] {
        &self.labels
    }
}

/// The label order of one series: positions into its labels, sorted by (name, value).
type Perm = Vec<u16>;

/// The order of a list of label sets: (index, index into `perms`), sorted by label pairs as
/// Prometheus's client libraries do.
struct SeriesOrder {
    order: Vec<(u32, u32)>,
    perms: Vec<Perm>,
}

/// The orders of a family's samples and of its distributions.
struct FamilyOrder {
    samples: SeriesOrder,
    distributions: SeriesOrder,
}

impl FamilyOrder {
    fn of(family: &Family) -> FamilyOrder {
        FamilyOrder { samples: series_order(&family.samples), distributions: series_order(&family.distributions) }
    }
}

fn label_perm(labels: &[(Text, Text)]) -> Perm {
    let mut p: Perm = (0..labels.len() as u16).collect();
    p.sort_unstable_by(|&a, &b| {
        let (x, y) = (&labels[a as usize], &labels[b as usize]);
        (&*x.0, &*x.1).cmp(&(&*y.0, &*y.1))
    });
    p
}

/// Whether `a`'s labels have the same names as `b`'s, in the same positions.
fn same_names(a: &[(Text, Text)], b: &[(Text, Text)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0)
}

/// Series that name their labels alike (nearly always all of a family's) share one label order.
fn series_order<T: Labelled>(items: &[T]) -> SeriesOrder {
    let mut perms: Vec<Perm> = Vec::new();
    // The item whose names the last perm was made for, if that perm can be shared (no name twice).
    let mut shared: Option<usize> = None;
    let mut order: Vec<(u32, u32)> = Vec::with_capacity(items.len());
    for (i, s) in items.iter().enumerate() {
        let reuse = shared.is_some_and(|r| same_names(items[r].labels(), s.labels()));
        if !reuse {
            let labels = s.labels();
            let p = label_perm(labels);
            let unique_names = p.windows(2).all(|w| labels[w[0] as usize].0 != labels[w[1] as usize].0);
            shared = unique_names.then_some(i);
            perms.push(p);
        }
        order.push((i as u32, (perms.len() - 1) as u32));
    }
    order.sort_unstable_by(|&(a, pa), &(b, pb)| {
        let (la, lb) = (items[a as usize].labels(), items[b as usize].labels());
        let ka = perms[pa as usize].iter().map(|&i| (&*la[i as usize].0, &*la[i as usize].1));
        let kb = perms[pb as usize].iter().map(|&i| (&*lb[i as usize].0, &*lb[i as usize].1));
        // Ties (duplicate series) keep their input order.
        ka.cmp(kb).then(a.cmp(&b))
    });
    SeriesOrder { order, perms }
}

fn write_family(out: &mut impl Out, family: &Family, order: &FamilyOrder, dialect: &Dialect) {
    let format = dialect.format;
    let (name, type_name) = (dialect.meta)(family);
    out.put(b"# HELP ");
    out.put(name.as_bytes());
    out.put(b" ");
    escape(out, &family.help, Escape::help(format));
    out.put(b"\n# TYPE ");
    out.put(name.as_bytes());
    out.put(b" ");
    out.put(type_name.as_bytes());
    out.put(b"\n");
    let open_metrics = format == Format::OpenMetrics;
    if let (Some(unit), true) = (&family.unit, open_metrics) {
        out.put(b"# UNIT ");
        out.put(name.as_bytes());
        out.put(b" ");
        out.put(unit.as_bytes());
        out.put(b"\n");
    }
    let created_name = format!("{name}_created");
    let created = |i: usize| family.created.get(i).copied().filter(|c| open_metrics && !c.is_nan());
    for &(i, p) in &order.samples.order {
        let sample = &family.samples[i as usize];
        let perm = &order.samples.perms[p as usize];
        let series = Series { name: &family.name, suffix: "", labels: &sample.labels, perm, extra: None };
        series.write(out, sample.value);
        if let Some(c) = created(i as usize) {
            Series { name: &created_name, ..series }.write(out, c);
        }
    }
    for &(i, p) in &order.distributions.order {
        let d = &family.distributions[i as usize];
        let perm = &order.distributions.perms[p as usize];
        let series = Series { name: &family.name, suffix: "", labels: &d.labels, perm, extra: None };
        let (suffix, point_label) = match family.kind {
            MetricType::Summary => ("", "quantile"),
            _ => ("_bucket", "le"),
        };
        for &(at, value) in &d.points {
            Series { suffix, extra: Some((point_label, at)), ..series }.write(out, value);
        }
        Series { suffix: "_sum", ..series }.write(out, d.sum);
        Series { suffix: "_count", ..series }.write(out, d.count);
        if let Some(c) = d.created.filter(|_| open_metrics) {
            Series { name: &created_name, ..series }.write(out, c);
        }
    }
}

/// One line's name and labels.
#[derive(Clone, Copy)]
struct Series<'a> {
    name: &'a str,
    suffix: &'a str,
    labels: &'a [(Text, Text)],
    perm: &'a [u16],
    /// A label after the others: a bucket's `le` or a summary's `quantile`.
    extra: Option<(&'a str, f64)>,
}

impl Series<'_> {
    fn write(&self, out: &mut impl Out, value: f64) {
        out.put(self.name.as_bytes());
        out.put(self.suffix.as_bytes());
        if !self.labels.is_empty() || self.extra.is_some() {
            out.put(b"{");
            for (n, &l) in self.perm.iter().enumerate() {
                let (k, v) = &self.labels[l as usize];
                if n > 0 {
                    out.put(b",");
                }
                out.put(k.as_bytes());
                out.put(b"=\"");
                escape(out, v, Escape::LABEL_VALUE);
                out.put(b"\"");
            }
            if let Some((k, at)) = self.extra {
                if !self.labels.is_empty() {
                    out.put(b",");
                }
                out.put(k.as_bytes());
                out.put(b"=\"");
                write_value(out, at);
                out.put(b"\"");
            }
            out.put(b"}");
        }
        out.put(b" ");
        write_value(out, value);
        out.put(b"\n");
    }
}

/// Which characters a piece of text escapes besides `\` and newline.
#[derive(Clone, Copy)]
struct Escape {
    quote: bool,
}

impl Escape {
    const LABEL_VALUE: Escape = Escape { quote: true };

    /// HELP text escapes `"` in OpenMetrics only.
    fn help(format: Format) -> Escape {
        Escape { quote: format == Format::OpenMetrics }
    }
}

fn escape(out: &mut impl Out, s: &str, how: Escape) {
    let special = |b: u8| b == b'\\' || b == b'\n' || (how.quote && b == b'"');
    if !s.bytes().any(special) {
        out.put(s.as_bytes());
        return;
    }
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if special(b) {
            out.put(&bytes[start..i]);
            out.put(match b {
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                _ => b"\\\"",
            });
            start = i + 1;
        }
    }
    out.put(&bytes[start..]);
}

/// How [`format_value`] writes a value, without allocating.
fn write_value_fmt(w: &mut impl std::fmt::Write, v: f64) -> std::fmt::Result {
    if v.is_nan() {
        w.write_str("NaN")
    } else if v.is_infinite() {
        w.write_str(if v > 0.0 { "+Inf" } else { "-Inf" })
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        write!(w, "{}", v as i64)
    } else {
        write!(w, "{v}")
    }
}

fn write_value(out: &mut impl Out, v: f64) {
    let _ = write_value_fmt(&mut Fmt(out), v);
}

/// Formats a sample value the way Go's client does for the common cases: integers without a
/// fraction, `NaN`, `+Inf`, `-Inf`, everything else in the shortest form that reads back exactly.
///
/// ```
/// use sql_signal_exporter::eval::exposition::format_value;
/// assert_eq!(format_value(1.0), "1");
/// assert_eq!(format_value(0.25), "0.25");
/// assert_eq!(format_value(f64::INFINITY), "+Inf");
/// ```
pub fn format_value(v: f64) -> String {
    let mut s = String::new();
    let _ = write_value_fmt(&mut s, v);
    s
}
