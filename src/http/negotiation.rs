//! Which exposition format a scrape gets, from its `Accept` header: OpenMetrics when the scraper
//! prefers it (Prometheus asks for `application/openmetrics-text;version=1.0.0` first by default),
//! the text format otherwise, and always when the header is absent, unreadable or only says `*/*`.
//!
//! Each media range is parsed by the `mime` crate; a range's `q` weighs it (default 1, `q=0` refuses
//! it). OpenMetrics wins when its best weight is positive and at least the text format's (an
//! explicit `text/plain` or a wildcard): a scraper that names OpenMetrics and a wildcard equally
//! wants OpenMetrics.

use crate::eval::exposition::Format;

/// The OpenMetrics versions this exporter writes a body valid for (1.0.0, and 0.0.1, the draft
/// Prometheus still lists).
const OPENMETRICS_VERSIONS: [&str; 2] = ["1.0.0", "0.0.1"];

/// `Accept` read straight into the format to serve, without copying the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated(pub Format);

impl std::str::FromStr for Negotiated {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Negotiated(negotiate(s)))
    }
}

/// The format an `Accept` value asks for.
pub fn negotiate(accept: &str) -> Format {
    let (mut openmetrics, mut text) = (0.0_f32, 0.0_f32);
    for range in accept.split(',') {
        let Ok(mime) = range.trim().parse::<mime::Mime>() else { continue };
        let q = mime.get_param("q").and_then(|q| q.as_str().parse::<f32>().ok()).unwrap_or(1.0);
        let version = mime.get_param("version").map(|v| v.as_str().to_string());
        match (mime.type_().as_str(), mime.subtype().as_str()) {
            ("application", "openmetrics-text")
                if version.as_deref().is_none_or(|v| OPENMETRICS_VERSIONS.contains(&v)) =>
            {
                openmetrics = openmetrics.max(q)
            }
            ("text", "plain") | ("text", "*") | ("*", "*") => text = text.max(q),
            _ => {}
        }
    }
    if openmetrics > 0.0 && openmetrics >= text {
        Format::OpenMetrics
    } else {
        Format::Text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_defaults_get_openmetrics() {
        // Prometheus 2.x's default scrape protocols, and 3.x's.
        let v2 = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let v3 = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";
        assert_eq!(negotiate(v2), Format::OpenMetrics);
        assert_eq!(negotiate(v3), Format::OpenMetrics);
    }

    #[test]
    fn everything_else_gets_text() {
        for accept in [
            "",
            "*/*",
            "text/plain",
            "text/plain;version=0.0.4",
            "garbage;;;",
            "application/openmetrics-text;q=0",
            "application/openmetrics-text;version=2.0.0",
            "text/plain, application/openmetrics-text;q=0.5",
            "application/json",
        ] {
            assert_eq!(negotiate(accept), Format::Text, "{accept}");
        }
        assert_eq!(negotiate("application/openmetrics-text"), Format::OpenMetrics);
        assert_eq!(negotiate("*/*, application/openmetrics-text"), Format::OpenMetrics);
    }
}
