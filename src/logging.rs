//! Log output: logfmt (the Prometheus exporters' default) or JSON lines, through `tracing`.
//!
//! tracing-subscriber has no logfmt formatter, and its "compact" format is close but not parseable
//! (quoting is inconsistent). logfmt is small enough to write: `key=value` pairs, values quoted when
//! they contain spaces, quotes or `=`.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats each event as one logfmt line: `ts=… level=… msg=… key=value …`.
pub struct Logfmt;

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        let mut line = String::with_capacity(160);
        let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let _ = write!(line, "ts={ts} level={}", meta.level().as_str().to_ascii_lowercase());
        let mut fields = Fields { message: None, rest: String::new() };
        event.record(&mut fields);
        if let Some(msg) = fields.message {
            line.push_str(" msg=");
            push_value(&mut line, &msg);
        }
        line.push_str(&fields.rest);
        if meta.target() != "sql_signal_exporter" && !meta.target().starts_with("sql_signal_exporter::") {
            line.push_str(" source=");
            push_value(&mut line, meta.target());
        }
        writeln!(writer, "{line}")
    }
}

struct Fields {
    message: Option<String>,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record(field, format!("{value:?}"));
    }
}

impl Fields {
    fn record(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = Some(value);
        } else {
            self.rest.push(' ');
            self.rest.push_str(field.name());
            self.rest.push('=');
            push_value(&mut self.rest, &value);
        }
    }
}

/// Appends `value`, quoted and escaped when logfmt requires it.
fn push_value(out: &mut String, value: &str) {
    let needs_quotes = value.is_empty() || value.chars().any(|c| c == ' ' || c == '"' || c == '=' || c.is_control());
    if !needs_quotes {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::push_value;

    #[test]
    fn values_are_quoted_only_when_needed() {
        let mut s = String::new();
        push_value(&mut s, "plain");
        s.push(' ');
        push_value(&mut s, "two words");
        s.push(' ');
        push_value(&mut s, "a=\"b\"\nc");
        s.push(' ');
        push_value(&mut s, "");
        assert_eq!(s, "plain \"two words\" \"a=\\\"b\\\"\\nc\" \"\"");
    }
}
