//! Rendering of query templates and evaluation of expressions, both minijinja.
//!
//! Templates see only constants from the rules file and facts about the server, never target values:
//! those reach SQL as bind parameters. Undefined variables are errors (strict mode), so a typo in a
//! template fails `--check-rules` instead of silently rendering an empty string into SQL.

use minijinja::{Environment, UndefinedBehavior, Value};

use crate::rules::model::{Rule, RuleKind};

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

/// Shortens a minijinja error to one line without its debug dump.
pub fn describe(err: &minijinja::Error) -> String {
    let mut msg = err.to_string();
    if let Some(line) = err.line() {
        if !msg.contains("line") {
            msg.push_str(&format!(" (template line {line})"));
        }
    }
    msg
}
