//! Rendering of query templates and evaluation of expressions, both minijinja.
//!
//! Templates see only constants from the rules file and facts about the source, never target values:
//! those reach SQL as bind parameters. Undefined variables are errors (strict mode), so a typo in a
//! template fails `--check-rules` instead of silently rendering an empty string into SQL.
//!
//! Every template and expression error is worded here, by [`describe`] and [`describe_render`], so a
//! mistake reads the same in a signal, a metric rule, at load, in `--check-rules --db` and at run time.

use std::collections::BTreeSet;

use minijinja::{Environment, UndefinedBehavior, Value};

use super::model::{Rule, RuleKind};

/// The PostgreSQL version assumed where no server was asked (rules checks without `--db`).
pub const ASSUMED_SERVER_VERSION_NUM: i64 = 150000;

/// A minijinja environment configured the way every template and expression here is evaluated.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // SQL is not HTML: never escape.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env
}

/// The variables a rule's query template sees.
pub fn query_context(rule: &Rule, server_version_num: i64) -> Value {
    let mut ctx = serde_json::Map::new();
    ctx.insert("vars".into(), rule.vars.clone());
    ctx.insert("server_version_num".into(), server_version_num.into());
    ctx.insert("rule".into(), rule.name.clone().into());
    match &rule.kind {
        RuleKind::Signal(s) => {
            ctx.insert("window".into(), s.window.into());
            ctx.insert("min_rows".into(), s.min_rows.into());
            ctx.insert("labels".into(), s.labels.clone().into());
        }
        // A metric rule's template sees the common variables only: vars, server_version_num, rule.
        RuleKind::Metric(_) => {}
    }
    Value::from_serialize(serde_json::Value::Object(ctx))
}

/// Renders the SQL of `rule` for a server of `server_version_num`.
pub fn render_query(rule: &Rule, server_version_num: i64) -> Result<String, minijinja::Error> {
    let env = environment();
    let sql = env.render_str(&rule.query, query_context(rule, server_version_num))?;
    Ok(sql.trim().to_string())
}

/// Renders another template of `rule` (an endpoint rule's other queries, request paths and bodies)
/// with the context its query sees, the server version being the assumed one.
pub fn render_text(rule: &Rule, text: &str) -> Result<String, String> {
    let env = environment();
    let ctx = query_context(rule, ASSUMED_SERVER_VERSION_NUM);
    env.render_str(text, ctx).map(|s| s.trim().to_string()).map_err(|e| describe(&e))
}

/// Renders the SQL of `rule`, with a failure already worded by [`describe_render`].
pub fn render_query_described(rule: &Rule, server_version_num: i64) -> Result<String, String> {
    render_query(rule, server_version_num).map_err(|e| describe_render(rule, server_version_num, &e))
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
pub fn describe_render(rule: &Rule, server_version_num: i64, e: &minijinja::Error) -> String {
    let mut msg = describe(e);
    if e.kind() == minijinja::ErrorKind::UndefinedError {
        if let Some(better) = undefined_name(rule, server_version_num) {
            msg = better;
        }
    }
    if let Some(line) = e.line() {
        msg.push_str(&format!(" (line {line} of the query)"));
    }
    msg
}

/// "'vars.x' is not defined (vars has: a, b)" for the first name the template uses that its
/// context does not have.
fn undefined_name(rule: &Rule, server_version_num: i64) -> Option<String> {
    let env = environment();
    let tmpl = env.template_from_str(&rule.query).ok()?;
    let ctx = query_context(rule, server_version_num);
    let globals: BTreeSet<&str> = env.globals().map(|(name, _)| name).collect();
    let mut used: Vec<String> = tmpl.undeclared_variables(true).into_iter().collect();
    used.sort();
    let name = used.iter().find(|name| {
        let first = name.split('.').next().unwrap_or_default();
        !globals.contains(first) && lookup(&ctx, name).is_none()
    })?;
    let (parent, what) = match name.rsplit_once('.') {
        Some((parent, _)) => (lookup(&ctx, parent), format!("{parent} has")),
        None => (Some(ctx.clone()), "a query template sees".to_string()),
    };
    let known = parent.map(|v| keys_of(&v)).unwrap_or_default();
    Some(if known.is_empty() {
        format!(
            "'{name}' is not defined (the rule sets no {})",
            name.rsplit_once('.').map(|(p, _)| p).unwrap_or("variables")
        )
    } else {
        format!("'{name}' is not defined ({what}: {})", known.join(", "))
    })
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
