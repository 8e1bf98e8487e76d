//! Rendering of query templates and evaluation of expressions, both minijinja.
//!
//! Templates see only constants from the rules file and facts about the source (its
//! [`ServerIdentity`]), never target values: those reach SQL as bind parameters. Undefined variables are errors (strict mode), so a typo in a
//! template fails `--check-rules` instead of silently rendering an empty string into SQL.
//!
//! Every template and expression error is worded here, by [`describe`] and [`describe_render`], so a
//! mistake reads the same in a signal, a metric rule, at load, in `--check-rules --db` and at run time.

use std::collections::BTreeSet;

use minijinja::{Environment, UndefinedBehavior, Value};

use super::model::{Rule, RuleKind};
use super::schema_errors::edit_distance;
use super::server::ServerIdentity;

/// A minijinja environment configured the way every template and expression here is evaluated.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // SQL is not HTML: never escape.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env
}

/// The variables a rule's query template sees: `server` (see [`ServerIdentity`]) and
/// `server_version_num` (the same number as `server.version_num`, kept for the rules written
/// before `server`), `vars`, `rule`, and a signal's `window`, `min_rows` and `labels`.
pub fn query_context(rule: &Rule, server: &ServerIdentity) -> Value {
    let mut ctx = serde_json::Map::new();
    ctx.insert("vars".into(), rule.vars.clone());
    ctx.insert("server".into(), server.to_json());
    ctx.insert("server_version_num".into(), server.version_num.into());
    ctx.insert("rule".into(), rule.name.clone().into());
    match &rule.kind {
        RuleKind::Signal(s) => {
            ctx.insert("window".into(), s.window.into());
            ctx.insert("min_rows".into(), s.min_rows.into());
            ctx.insert("labels".into(), s.labels.clone().into());
        }
        // A metric rule's template sees the common variables only: vars, server, server_version_num, rule.
        RuleKind::Metric(_) => {}
    }
    Value::from_serialize(serde_json::Value::Object(ctx))
}

/// Renders the SQL of `rule` for `server`.
pub fn render_query(rule: &Rule, server: &ServerIdentity) -> Result<String, minijinja::Error> {
    let env = environment();
    let sql = env.render_str(&rule.query, query_context(rule, server))?;
    Ok(sql.trim().to_string())
}

/// Renders another template of `rule` (an endpoint rule's queries, request paths and bodies) with
/// the context its query sees.
pub fn render_text(rule: &Rule, text: &str, server: &ServerIdentity) -> Result<String, String> {
    let env = environment();
    let ctx = query_context(rule, server);
    env.render_str(text, ctx.clone()).map(|s| s.trim().to_string()).map_err(|e| describe_in(text, &ctx, &e))
}

/// Renders the SQL of `rule`, with a failure already worded by [`describe_render`].
pub fn render_query_described(rule: &Rule, server: &ServerIdentity) -> Result<String, String> {
    render_query(rule, server).map_err(|e| describe_render(rule, server, &e))
}

/// A minijinja error in one line: its kind, detail and line, without the source dump.
pub fn describe(e: &minijinja::Error) -> String {
    let mut msg = e.kind().to_string();
    if let Some(detail) = e.detail() {
        msg.push_str(": ");
        msg.push_str(detail);
    }
    msg
}

/// Why `rule`'s query template does not render, naming the undefined variable when that is the
/// reason (minijinja only says "undefined value") and the line of the template.
pub fn describe_render(rule: &Rule, server: &ServerIdentity, e: &minijinja::Error) -> String {
    let mut msg = describe_in(&rule.query, &query_context(rule, server), e);
    if let Some(line) = e.line() {
        msg.push_str(&format!(" (line {line} of the query)"));
    }
    msg
}

/// [`describe`], naming the undefined variable of `text` when that is the reason.
fn describe_in(text: &str, ctx: &Value, e: &minijinja::Error) -> String {
    if e.kind() == minijinja::ErrorKind::UndefinedError {
        if let Some(better) = undefined_name(text, ctx) {
            return better;
        }
    }
    describe(e)
}

/// "'vars.x' is not defined (vars has: a, b)" for the first name the template uses that its
/// context does not have, with "did you mean" when one of those is a near miss.
fn undefined_name(text: &str, ctx: &Value) -> Option<String> {
    let env = environment();
    let tmpl = env.template_from_str(text).ok()?;
    let globals: BTreeSet<&str> = env.globals().map(|(name, _)| name).collect();
    let mut used: Vec<String> = tmpl.undeclared_variables(true).into_iter().collect();
    used.sort();
    let name = used.iter().find(|name| {
        let first = name.split('.').next().unwrap_or_default();
        !globals.contains(first) && lookup(ctx, name).is_none()
    })?;
    let (parent, what) = match name.rsplit_once('.') {
        Some((parent, _)) => (lookup(ctx, parent), format!("{parent} has")),
        None => (Some(ctx.clone()), "a query template sees".to_string()),
    };
    let known = parent.map(|v| keys_of(&v)).unwrap_or_default();
    if known.is_empty() {
        return Some(format!(
            "'{name}' is not defined (the rule sets no {})",
            name.rsplit_once('.').map(|(p, _)| p).unwrap_or("variables")
        ));
    }
    let mut msg = format!("'{name}' is not defined ({what}: {})", known.join(", "));
    let (prefix, last) = match name.rsplit_once('.') {
        Some((parent, last)) => (format!("{parent}."), last),
        None => (String::new(), name.as_str()),
    };
    // A near miss only: one or two edits, and few for the name's length ('x' is not near 'a').
    let near = |k: &&String| {
        let d = edit_distance(k, last);
        d <= 2 && d * 3 <= k.len().max(last.len())
    };
    let close = known.iter().filter(near).min_by_key(|k| edit_distance(k, last));
    if let Some(close) = close {
        msg.push_str(&format!("; did you mean '{prefix}{close}'?"));
    }
    Some(msg)
}

fn lookup(ctx: &Value, dotted: &str) -> Option<Value> {
    let mut value = ctx.clone();
    for part in dotted.split('.') {
        value = value.get_attr(part).ok().filter(|v| !v.is_undefined())?;
    }
    Some(value)
}

fn keys_of(value: &Value) -> Vec<String> {
    if value.kind() != minijinja::value::ValueKind::Map {
        return Vec::new();
    }
    let mut keys: Vec<String> = value.try_iter().map(|it| it.map(|k| k.to_string()).collect()).unwrap_or_default();
    keys.sort();
    keys
}
