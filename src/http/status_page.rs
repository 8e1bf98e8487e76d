//! `/` and `/api/v1/status`: why each rule and each target is in the state it is in.
//!
//! Server-rendered HTML with inline CSS and no script, so it reads the same without JavaScript, on
//! a phone, and through any proxy. It reads the [`StatusStore`] only: a page view never runs a query
//! and never touches what `/metrics` serves. Every text that came from a rules file, a database or
//! an error message goes through [`esc`]: a label value holding `<script>` shows as text.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use warp::Filter;

use crate::eval::signal::span;
use crate::publish::outcome::EvaluationResult;
use crate::publish::status::{Evaluation, RuleStatus, StatusSnapshot, StatusStore};
use crate::publish::targets::TargetView;

/// Above this many targets a rule shows only those in error, and a count of the rest.
pub const MAX_TARGETS_SHOWN: usize = 500;

/// HTML-escapes text for element content and quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:1100px;padding:12px;color:#1b1b1b;background:#fafafa}
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.15em;margin:0 0 .4em;word-break:break-all}h3{font-size:1em;margin:1em 0 .3em}
a{color:#0b57d0}.meta{color:#555;font-size:.9em}
.summary{font-size:1.05em;margin:.6em 0 1em}
section.rule{background:#fff;border:1px solid #ddd;border-left:6px solid #2e7d32;border-radius:6px;padding:10px 14px;margin:0 0 16px}
section.rule.bad{border-left-color:#c62828}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:0}dl.facts dt{color:#555}dl.facts dd{margin:0}
.err{background:#fdecea;border:1px solid #f5c2c0;border-radius:4px;padding:6px 10px;margin:8px 0;white-space:pre-wrap;word-break:break-word}
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%;font-size:.93em}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eee;vertical-align:top}th{background:#f3f3f3}
td.why{min-width:16em}
.b{display:inline-block;padding:0 7px;border-radius:10px;font-size:.85em;font-weight:600;white-space:nowrap}
.b.up,.b.success{background:#e6f4ea;color:#1e6b34}.b.down{background:#fff3e0;color:#9a4b00}
.b.fail,.b.error,.b.timeout{background:#fdecea;color:#b3261e}.b.none{background:#eee;color:#555}
tr.fail td{background:#fff8f7}
pre{background:#f6f6f6;padding:8px;overflow-x:auto;font-size:.85em}
summary{cursor:pointer;margin:.6em 0 .2em;font-weight:600}
code{font-size:.9em}
table.overview{margin-bottom:16px}table.overview td:first-child{word-break:break-all}
@media (max-width:640px){
 body{padding:8px}section.rule{padding:8px 10px}
 table.targets thead{display:none}table.targets tr{display:block;border-bottom:1px solid #ddd;padding:4px 0}
 table.targets td{display:block;border:0;padding:1px 4px}td.why{min-width:0}
 table.targets td[data-label]::before{content:attr(data-label) ': ';color:#555}
}
";

/// "12s ago" / "in 48s".
fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds();
    if secs >= 0 {
        format!("{} ago", span(secs as u64))
    } else {
        format!("in {}", span(secs.unsigned_abs()))
    }
}

fn clock(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn millis(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// The state in words, as a badge: "too few rows" for `too_few_rows`.
fn state_badge(state: TargetView<'_>) -> String {
    let name = state.name();
    let class = match state {
        TargetView::Up => "up",
        TargetView::Down => "down",
        TargetView::Failed(..) => "fail",
    };
    format!("<span class=\"b {class}\" title=\"{name}\">{}</span>", name.replace('_', " "))
}

/// The one badge that says how a rule is: its query failed, or how many targets are in error.
fn headline(r: &RuleStatus) -> String {
    match &r.last {
        None => "<span class=\"b none\">not yet run</span>".into(),
        Some(l) if l.result == EvaluationResult::Timeout => "<span class=\"b fail\">query timed out</span>".into(),
        Some(l) if l.result != EvaluationResult::Success => "<span class=\"b fail\">query failed</span>".into(),
        Some(_) if r.targets.counts.errors() > 0 => {
            format!("<span class=\"b fail\">{} in error</span>", r.targets.counts.errors())
        }
        Some(_) if r.targets.counts.down > 0 => format!("<span class=\"b down\">{} down</span>", r.targets.counts.down),
        Some(_) => "<span class=\"b up\">ok</span>".into(),
    }
}

fn result_badge(result: EvaluationResult) -> String {
    format!("<span class=\"b {0}\">{0}</span>", result.as_str())
}

/// The whole page.
pub fn render(snapshot: &StatusSnapshot, telemetry_path: &str, now: DateTime<Utc>) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>sql-signal-exporter status</title><style>{STYLE}</style></head><body>\
         <h1>sql-signal-exporter status</h1>\
         <p class=\"meta\">Version {} · shown at {} · <a href=\"{}\">Metrics</a> · \
         <a href=\"/api/v1/status\">JSON</a> · reload the page to refresh</p>",
        esc(crate::VERSION),
        clock(now),
        esc(telemetry_path)
    );
    let rules: Vec<&Arc<RuleStatus>> = {
        let (mut bad, good): (Vec<_>, Vec<_>) = snapshot.rules.iter().partition(|r| r.in_error());
        bad.extend(good);
        bad
    };
    let bad_rules = rules.iter().filter(|r| r.in_error()).count();
    let (errors, down, up) =
        rules.iter().map(|r| &r.targets.counts).fold((0, 0, 0), |(e, d, u), c| (e + c.errors(), d + c.down, u + c.up));
    let _ = write!(
        h,
        "<p class=\"summary\"><strong>{} of {} rules</strong> in error. Targets: <strong>{errors} in error</strong>, \
         {down} down, {up} up.</p>",
        bad_rules,
        rules.len()
    );
    if rules.is_empty() {
        h.push_str("<p>No rules are loaded.</p>");
    } else {
        h.push_str(
            "<div class=\"scroll\"><table class=\"overview\"><thead><tr><th>Rule</th><th>State</th>\
             <th>Source</th><th>Last run</th></tr></thead><tbody>",
        );
        for r in &rules {
            let last = r.last.as_ref().map(|l| relative(l.at, now)).unwrap_or_else(|| "not yet".into());
            let _ = write!(
                h,
                "<tr><td><a href=\"#rule-{0}\">{0}</a></td><td>{1}</td><td>{2}</td><td>{last}</td></tr>",
                esc(&r.name),
                headline(r),
                r.sources.iter().map(|s| esc(s)).collect::<Vec<_>>().join(", ")
            );
        }
        h.push_str("</tbody></table></div>");
    }
    for r in rules {
        rule_section(&mut h, r, now);
    }
    h.push_str("</body></html>\n");
    h
}

fn rule_section(h: &mut String, r: &RuleStatus, now: DateTime<Utc>) {
    let class = if r.in_error() { "rule bad" } else { "rule" };
    let badge = headline(r);
    let _ =
        write!(h, "<section class=\"{class}\" id=\"rule-{0}\"><h2>{badge} {0}</h2><dl class=\"facts\">", esc(&r.name));
    let sources = r.sources.iter().map(|s| esc(s)).collect::<Vec<_>>().join(", ");
    let _ = write!(
        h,
        "<dt>Kind</dt><dd>{}</dd><dt>Source</dt><dd>{sources}</dd><dt>Interval</dt><dd>{}</dd>",
        r.kind,
        humantime::format_duration(r.interval)
    );
    if let Some(l) = &r.last {
        let _ = write!(
            h,
            "<dt>Last run</dt><dd>{} ({}), took {}</dd><dt>Query</dt><dd>{} · {} rows · {} series</dd>",
            clock(l.at),
            relative(l.at, now),
            millis(l.duration),
            result_badge(l.result),
            l.rows,
            l.series
        );
    }
    if let Some(next) = r.next_run {
        let _ = write!(h, "<dt>Next run</dt><dd>{} ({})</dd>", clock(next), relative(next, now));
    }
    h.push_str("</dl>");
    if let Some(err) = r.last.as_ref().and_then(|l| l.error.as_deref()) {
        let _ = write!(h, "<div class=\"err\"><strong>Error:</strong> {}</div>", esc(err));
    }
    if r.kind == "signal" && r.last.is_some() {
        targets_table(h, r);
    }
    let failures_shown = if r.failures.is_empty() { Disclosure::Closed } else { Disclosure::Open };
    history_table(h, History { title: "Recent failures", note: "however old", rows: &r.failures }, failures_shown);
    history_table(h, History { title: "Last evaluations", note: "newest first", rows: &r.history }, Disclosure::Closed);
    if let Some(sql) = &r.sql {
        let _ = write!(h, "<details><summary>SQL as last run</summary><pre>{}</pre></details>", esc(sql));
    }
    h.push_str("</section>");
}

fn targets_table(h: &mut String, r: &RuleStatus) {
    let c = &r.targets.counts;
    let _ = write!(
        h,
        "<h3>Targets: {} in error, {} down, {} up</h3><div class=\"scroll\"><table class=\"targets\"><thead><tr>",
        c.errors(),
        c.down,
        c.up
    );
    for l in &r.labels {
        let _ = write!(h, "<th>{}</th>", esc(l));
    }
    h.push_str("<th>State</th><th>Why</th></tr></thead><tbody>");
    let many = r.targets.len() > MAX_TARGETS_SHOWN;
    // Errors come first; with many targets only they are listed, and at most that many of them (a
    // database that is down fails every target with the same detail).
    for (n, t) in r.targets.errors_first().enumerate() {
        let failed = matches!(t.state, TargetView::Failed(..));
        if many && (!failed || n == MAX_TARGETS_SHOWN) {
            break;
        }
        h.push_str(if failed { "<tr class=\"fail\">" } else { "<tr>" });
        for (name, v) in r.labels.iter().zip(&t.labels) {
            let _ = write!(h, "<td data-label=\"{}\">{}</td>", esc(name), esc(v));
        }
        let why = match t.state {
            TargetView::Failed(failure, detail) => {
                let series = r.error_series.get(failure as usize).map(|s| esc(s)).unwrap_or_default();
                format!("{}<br><small><code>{series}</code> = 1</small>", esc(detail))
            }
            TargetView::Down => "no result judged was a success".into(),
            TargetView::Up => String::new(),
        };
        let _ = write!(h, "<td>{}</td><td class=\"why\">{why}</td></tr>", state_badge(t.state));
    }
    h.push_str("</tbody></table></div>");
    if many {
        let listed = if c.errors() > MAX_TARGETS_SHOWN {
            format!("the first {MAX_TARGETS_SHOWN} of the {} in error are listed", c.errors())
        } else {
            format!("only the {} in error are listed", c.errors())
        };
        let _ = write!(
            h,
            "<p>{} targets: {listed}; {} down and {} up are not \
             (all of them are in <a href=\"/api/v1/status\">the JSON</a>).</p>",
            r.targets.len(),
            c.down,
            c.up
        );
    }
}

/// Whether a `<details>` section starts open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disclosure {
    Open,
    Closed,
}

/// A list of evaluations under a title.
struct History<'a> {
    title: &'a str,
    note: &'a str,
    rows: &'a std::collections::VecDeque<Evaluation>,
}

fn history_table(h: &mut String, history: History<'_>, shown: Disclosure) {
    let History { title, note, rows } = history;
    let open = if shown == Disclosure::Open { " open" } else { "" };
    let _ = write!(h, "<details{open}><summary>{title} ({}, {note})</summary>", rows.len());
    if rows.is_empty() {
        h.push_str("<p>None.</p></details>");
        return;
    }
    h.push_str(
        "<div class=\"scroll\"><table><thead><tr><th>Time</th><th>Result</th><th>Took</th>\
         <th>Rows</th><th>Series</th><th>Error</th></tr></thead><tbody>",
    );
    for e in rows {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            clock(e.at),
            result_badge(e.result),
            millis(e.duration),
            e.rows,
            e.series,
            esc(e.error.as_deref().unwrap_or(""))
        );
    }
    h.push_str("</tbody></table></div></details>");
}

/// `GET /` (the page) and `GET /api/v1/status` (the JSON). Both are rendered on the blocking pool:
/// a rule of 100k targets takes a while to write out, and the runtime's threads serve `/metrics`.
pub fn routes(
    status: Arc<StatusStore>,
    telemetry_path: String,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    use warp::http::{header, HeaderValue, StatusCode};
    use warp::Reply;
    let telemetry_path: Arc<str> = telemetry_path.into();
    let page_status = status.clone();
    let page = warp::path::end().and(warp::get()).and_then(move || {
        let (status, telemetry_path) = (page_status.clone(), telemetry_path.clone());
        blocking(move || (render(&status.load(), &telemetry_path, Utc::now()), "text/html; charset=utf-8"))
    });
    let api = warp::path!("api" / "v1" / "status").and(warp::get()).and_then(move || {
        let status = status.clone();
        blocking(move || (crate::publish::status::to_json(&status.load(), Utc::now()), "application/json"))
    });
    async fn blocking(
        f: impl FnOnce() -> (String, &'static str) + Send + 'static,
    ) -> Result<warp::reply::Response, warp::Rejection> {
        Ok(match tokio::task::spawn_blocking(f).await {
            Ok((body, content_type)) => {
                let mut response = body.into_response();
                response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
                response
            }
            Err(_) => warp::reply::with_status("the status could not be rendered\n", StatusCode::INTERNAL_SERVER_ERROR)
                .into_response(),
        })
    }
    page.or(api).unify()
}

#[cfg(test)]
mod tests;
