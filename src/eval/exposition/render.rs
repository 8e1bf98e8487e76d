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
    write_header(out, family, dialect);
    write_series(out, family, order, dialect);
}

/// A family's metadata lines: `# HELP`, `# TYPE` and (OpenMetrics) `# UNIT`.
fn write_header(out: &mut impl Out, family: &Family, dialect: &Dialect) {
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
    if let (Some(unit), Format::OpenMetrics) = (&family.unit, format) {
        out.put(b"# UNIT ");
        out.put(name.as_bytes());
        out.put(b" ");
        out.put(unit.as_bytes());
        out.put(b"\n");
    }
}

/// A family's series lines, sorted; in OpenMetrics with their `_created` lines.
fn write_series(out: &mut impl Out, family: &Family, order: &FamilyOrder, dialect: &Dialect) {
    let open_metrics = dialect.format == Format::OpenMetrics;
    let created_name = if open_metrics { format!("{}_created", (dialect.meta)(family).0) } else { String::new() };
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

/// Whether a family's series read differently in OpenMetrics than in the text format: only its
/// `_created` lines, when it knows any, set them apart.
fn series_differ_in_openmetrics(family: &Family) -> bool {
    family.created.iter().any(|c| !c.is_nan()) || family.distributions.iter().any(|d| d.created.is_some())
}

/// Renders `families` in the text format (`text_dialect`) and describes OpenMetrics (`om_dialect`) as
/// pieces of it (see [`Exposed`]): one walk that sorts each family's series once for both formats.
pub(super) fn render_exposed(families: &[Family], text_dialect: &Dialect, om_dialect: &Dialect) -> Exposed {
    let orders: Vec<FamilyOrder> = families.iter().map(FamilyOrder::of).collect();
    let mut measure = Measure(0);
    for (family, order) in families.iter().zip(&orders) {
        write_family(&mut measure, family, order, text_dialect);
    }
    let mut text = Vec::with_capacity(measure.0);
    let mut pieces = Pieces::default();
    for (family, order) in families.iter().zip(&orders) {
        write_header(&mut text, family, text_dialect);
        let series_start = text.len();
        write_series(&mut text, family, order, text_dialect);
        write_header(pieces.own(), family, om_dialect);
        if series_differ_in_openmetrics(family) {
            write_series(pieces.own(), family, order, om_dialect);
        } else {
            pieces.reuse(series_start..text.len(), &text);
        }
    }
    debug_assert_eq!(text.len(), measure.0, "the measured length is exact");
    Exposed { text, openmetrics: pieces.done() }
}

/// A piece of an OpenMetrics body described against the text format's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// These bytes of the text rendering, as they are.
    Text(std::ops::Range<usize>),
    /// Bytes of OpenMetrics' own (metadata lines, or series with `_created` lines).
    Own(Vec<u8>),
}

/// Families rendered in the text format, and OpenMetrics as [`Piece`]s of those bytes and its own:
/// the two formats share every series line but `_created`, so OpenMetrics costs its metadata
/// lines, not a second copy of the series.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exposed {
    pub text: Vec<u8>,
    pub openmetrics: Vec<Piece>,
}

impl Exposed {
    /// The OpenMetrics bytes the pieces describe, in one buffer (for tests and `--once`).
    pub fn openmetrics_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in &self.openmetrics {
            match piece {
                Piece::Text(range) => out.extend_from_slice(&self.text[range.clone()]),
                Piece::Own(bytes) => out.extend_from_slice(bytes),
            }
        }
        out
    }
}

/// Below this many bytes, a run of the text rendering is copied into the neighbouring piece rather
/// than referenced: fewer, larger buffers for a scrape to send.
const SMALLEST_SHARED_RUN: usize = 16 * 1024;

/// The pieces of an OpenMetrics body as they are built: finished pieces, and bytes of its own
/// not yet made a piece.
#[derive(Default)]
struct Pieces {
    done: Vec<Piece>,
    own: Vec<u8>,
}

impl Pieces {
    /// Where bytes of OpenMetrics' own are written.
    fn own(&mut self) -> &mut Vec<u8> {
        &mut self.own
    }

    /// `range` of `text` as the next piece: shared when long, copied when short.
    fn reuse(&mut self, range: std::ops::Range<usize>, text: &[u8]) {
        if range.len() < SMALLEST_SHARED_RUN {
            self.own.extend_from_slice(&text[range]);
            return;
        }
        self.flush();
        self.done.push(Piece::Text(range));
    }

    fn flush(&mut self) {
        if !self.own.is_empty() {
            self.done.push(Piece::Own(std::mem::take(&mut self.own)));
        }
    }

    fn done(mut self) -> Vec<Piece> {
        self.flush();
        self.done
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
