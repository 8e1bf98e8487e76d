//! Turns JSON Schema validation errors into messages an operator can act on.
//!
//! jsonschema's own texts are written for schema authors (`-1 is less than the minimum of 1`,
//! `"windw" was unexpected`, `{…} is not valid under any of the schemas listed in the 'oneOf'
//! keyword`). Here each error names the key it is about, says what was found and what is expected,
//! and suggests the key that was probably meant. Unknown keys are reported one by one, each at the
//! key itself, so the position points at the typo rather than at the mapping that holds it.

use serde_json::Value;

use jsonschema::error::{TypeKind, ValidationErrorKind as K};
use jsonschema::ValidationError;

use super::span::escape;

/// One problem the schema found: where (a JSON pointer) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaProblem {
    pub pointer: String,
    pub message: String,
}

/// The problems one validation error stands for (several for several unknown keys).
pub fn describe(schema: &Value, err: &ValidationError<'_>) -> Vec<SchemaProblem> {
    let pointer = err.instance_path().as_str().to_string();
    let one = |message: String| vec![SchemaProblem { pointer: pointer.clone(), message }];
    let key = key_name(&pointer);
    // Values under `databases` may hold a DSN with its password: never echo them.
    let hidden;
    let value = if pointer.starts_with("/databases") {
        hidden = hide_strings(err.instance());
        &hidden
    } else {
        err.instance()
    };
    match err.kind() {
        K::AdditionalProperties { unexpected } | K::UnevaluatedProperties { unexpected } => {
            let allowed = allowed_keys(schema, &pointer);
            unexpected
                .iter()
                .map(|k| {
                    let mut message = format!("unknown key '{k}'");
                    if let Some(close) = closest(k, &allowed) {
                        message.push_str(&format!("; did you mean '{close}'?"));
                    }
                    SchemaProblem { pointer: format!("{pointer}/{}", escape(k)), message }
                })
                .collect()
        }
        K::Required { property } => one(format!("missing required key '{}'", plain(property))),
        K::Minimum { limit } => one(format!("{key}: {} is less than the minimum of {limit}", show(value))),
        K::Maximum { limit } => one(format!("{key}: {} is greater than the maximum of {limit}", show(value))),
        K::ExclusiveMinimum { limit } => one(format!("{key}: {} must be greater than {limit}", show(value))),
        K::ExclusiveMaximum { limit } => one(format!("{key}: {} must be less than {limit}", show(value))),
        K::Type { kind } => one(format!("{key}: expected {}, found {}", expected_types(kind), found(value))),
        K::Constant { expected_value } if pointer == "/version" => one(format!(
            "version: {} is not a format version this exporter reads; write version: {}",
            show(value),
            plain(expected_value)
        )),
        K::Constant { expected_value } => {
            one(format!("{key}: must be {}, found {}", show(expected_value), show(value)))
        }
        K::Enum { options } => {
            let options: Vec<String> = options.as_array().map(|a| a.iter().map(plain).collect()).unwrap_or_default();
            one(format!("{key}: {} is not one of: {}", show(value), options.join(", ")))
        }
        K::MinLength { limit: 1 } | K::MinItems { limit: 1 } | K::MinProperties { limit: 1 } => {
            one(format!("{key}: must not be empty"))
        }
        K::MinLength { limit } => one(format!("{key}: must be at least {limit} characters long")),
        K::MaxLength { limit } => one(format!("{key}: must be at most {limit} characters long")),
        K::MinItems { limit } => one(format!("{key}: must have at least {limit} items")),
        K::MaxItems { limit } => one(format!("{key}: must have at most {limit} items")),
        K::MinProperties { limit } => one(format!("{key}: must have at least {limit} keys")),
        K::MaxProperties { limit } => one(format!("{key}: must have at most {limit} keys")),
        K::UniqueItems => {
            let items = value.as_array().map(Vec::as_slice).unwrap_or_default();
            match (1..items.len()).find(|&j| items[..j].contains(&items[j])) {
                Some(j) => vec![SchemaProblem {
                    pointer: format!("{pointer}/{j}"),
                    message: format!("{key}: {} is listed more than once", show(&items[j])),
                }],
                None => one(format!("{key}: every item must be unique")),
            }
        }
        K::Pattern { pattern } => one(format!("{key}: {}", pattern_message(schema, pattern, value))),
        K::PropertyNames { error } => {
            let name = error.instance().as_str().unwrap_or_default().to_string();
            let what = match error.kind() {
                K::Pattern { pattern } => pattern_message(schema, pattern, error.instance()),
                _ => format!("'{name}' is not a valid key here"),
            };
            vec![SchemaProblem { pointer: format!("{pointer}/{}", escape(&name)), message: format!("key {what}") }]
        }
        K::OneOfNotValid { context } => one(one_of_not_valid(&key, value, context)),
        K::FalseSchema => one(not_allowed(schema, &pointer, &key, err.schema_path().as_str())),
        K::OneOfMultipleValid { .. } => match required_alternatives(schema, &pointer, value) {
            Some(alts) => one(format!("{key}: give only one of {}, not several", quoted_list(&alts, "or"))),
            None => one(format!("{key}: {} matches more than one of the allowed forms", show(value))),
        },
        _ => one(err.to_string()),
    }
}

/// `window`, `labels[1]`, `signals[0]` or `the rules file`, for the start of a message.
fn key_name(pointer: &str) -> String {
    let segments: Vec<String> = pointer.split('/').skip(1).map(|s| s.replace("~1", "/").replace("~0", "~")).collect();
    let mut indexes = String::new();
    for segment in segments.iter().rev() {
        if segment.parse::<usize>().is_ok() {
            indexes.insert_str(0, &format!("[{segment}]"));
        } else {
            return format!("{segment}{indexes}");
        }
    }
    if indexes.is_empty() {
        "the rules file".to_string()
    } else {
        indexes
    }
}

/// `value` with every string replaced by `<hidden>`.
fn hide_strings(value: &Value) -> Value {
    match value {
        Value::String(_) => Value::String("<hidden>".into()),
        Value::Array(items) => Value::Array(items.iter().map(hide_strings).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), hide_strings(v))).collect()),
        other => other.clone(),
    }
}

/// A value as it would be written in YAML, shortened.
fn show(value: &Value) -> String {
    let text = match value {
        Value::String(s) => format!("'{s}'"),
        Value::Null => "null".to_string(),
        other => other.to_string(),
    };
    if text.chars().count() > 60 {
        let short: String = text.chars().take(57).collect();
        format!("{short}...")
    } else {
        text
    }
}

/// A string without quotes; anything else as JSON.
fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn found(value: &Value) -> String {
    match value {
        Value::Null => "nothing (null)".to_string(),
        Value::Bool(_) => format!("the boolean {}", show(value)),
        Value::Number(_) => format!("the number {}", show(value)),
        Value::String(_) => format!("the string {}", show(value)),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "a mapping".to_string(),
    }
}

fn type_name(t: &str) -> &'static str {
    match t {
        "integer" => "an integer",
        "number" => "a number",
        "string" => "a string",
        "boolean" => "a boolean",
        "array" => "a list",
        "object" => "a mapping",
        "null" => "null",
        _ => "a value of another type",
    }
}

fn expected_types(kind: &TypeKind) -> String {
    match kind {
        TypeKind::Single(t) => type_name(&t.to_string()).to_string(),
        TypeKind::Multiple(set) => {
            let names: Vec<String> = set.iter().map(|t| type_name(&t.to_string()).to_string()).collect();
            names.join(" or ")
        }
    }
}

fn quoted_list(items: &[String], conjunction: &str) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("'{i}'")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} {conjunction} {last}", rest.join(", ")),
        _ => quoted.join(""),
    }
}

/// A `oneOf` that nothing matched: either alternatives of required keys (`dsn` or `dsn_file`), or
/// alternatives of types (a string or a list of strings).
fn one_of_not_valid(key: &str, value: &Value, context: &[Vec<ValidationError<'static>>]) -> String {
    let mut required = Vec::new();
    let mut types = Vec::new();
    let mut other = false;
    for branch in context {
        match branch.first().map(|e| e.kind()) {
            Some(K::Required { property }) if branch.len() == 1 => required.push(plain(property)),
            Some(K::Type { kind }) => types.push(expected_types(kind)),
            Some(K::MinItems { .. }) | Some(K::MinLength { .. }) => {}
            _ => other = true,
        }
    }
    if !other && !required.is_empty() && types.is_empty() {
        return format!("{key}: give one of {}", quoted_list(&required, "or"));
    }
    if !other && !types.is_empty() && required.is_empty() {
        if types.len() == 2 && types[1] == "a list" {
            // The schema's lists here are lists of the first alternative.
            return format!("{key}: expected {} or a list of them, found {}", types[0], found(value));
        }
        return format!("{key}: expected {}, found {}", types.join(" or "), found(value));
    }
    format!("{key}: {} does not match any of the allowed forms", show(value))
}

/// A key that a conditional part of the schema forbids (`then: {properties: {value: false}}`): the
/// description of that `then` says why, when it can be found.
fn not_allowed(root: &Value, pointer: &str, key: &str, schema_path: &str) -> String {
    let why = || -> Option<&str> {
        let (before, _) = schema_path.rsplit_once("/then/")?;
        let index: usize = before.rsplit('/').next()?.parse().ok()?;
        let node = subschema(root, pointer.rsplit_once('/')?.0)?;
        node.get("allOf")?.get(index)?.get("then")?.get("description")?.as_str()
    };
    match why() {
        Some(why) => format!("{key} does not belong here: {why}"),
        None => format!("{key} is not allowed here; remove it"),
    }
}

/// Follows `pointer` through the schema (properties, items, additionalProperties, `$ref`s into
/// `$defs`) to the subschema that describes the value there.
fn subschema<'a>(root: &'a Value, pointer: &str) -> Option<&'a Value> {
    let mut schema = resolve(root, root)?;
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        let next = if let Some(p) = schema.get("properties").and_then(|p| p.get(&segment)) {
            p
        } else if let (Ok(_), Some(items)) = (segment.parse::<usize>(), schema.get("items")) {
            items
        } else {
            schema.get("additionalProperties").filter(|v| v.is_object())?
        };
        schema = resolve(root, next)?;
    }
    Some(schema)
}

fn resolve<'a>(root: &'a Value, schema: &'a Value) -> Option<&'a Value> {
    let mut schema = schema;
    for _ in 0..8 {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => schema = root.pointer(r.strip_prefix('#')?)?,
            None => return Some(schema),
        }
    }
    None
}

/// The keys the schema allows in the mapping at `pointer`.
fn allowed_keys(root: &Value, pointer: &str) -> Vec<String> {
    subschema(root, pointer)
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// The keys of a `oneOf` whose every alternative only requires one key (`dsn` | `dsn_file`), and
/// of which `instance` gives more than one (a node may have several such `oneOf`s: a family's
/// `name` | `name_from` and `value` | `values`).
fn required_alternatives(root: &Value, pointer: &str, instance: &Value) -> Option<Vec<String>> {
    let node = subschema(root, pointer)?;
    // The alternatives stand directly in the node, in its `then` (applied to mappings only), or in
    // the `then` of one of its `allOf`.
    let nested = node.get("allOf").and_then(Value::as_array).into_iter().flatten().filter_map(|n| n.get("then"));
    let candidates = [Some(node), node.get("then")].into_iter().flatten().chain(nested);
    candidates.filter_map(|n| n.get("oneOf")?.as_array()).find_map(|one_of| {
        let keys: Vec<String> = one_of
            .iter()
            .map(|alt| match alt.get("required")?.as_array()?.as_slice() {
                [Value::String(k)] => Some(k.clone()),
                _ => None,
            })
            .collect::<Option<_>>()?;
        (keys.iter().filter(|k| instance.get(k.as_str()).is_some()).count() > 1).then_some(keys)
    })
}

fn closest<'a>(key: &str, allowed: &'a [String]) -> Option<&'a str> {
    let key_lower = key.to_lowercase();
    allowed
        .iter()
        .map(|a| (edit_distance(&key_lower, a), a))
        .filter(|(d, a)| *d <= 2 && *d * 3 <= a.len().max(key.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a.as_str())
}

/// Levenshtein distance, for "did you mean" suggestions.
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb { diagonal } else { 1 + diagonal.min(above).min(row[j]) };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// What a string that fails a `pattern` was supposed to be, by the `$defs` entry with that pattern.
fn pattern_message(root: &Value, pattern: &str, value: &Value) -> String {
    let def = root.get("$defs").and_then(Value::as_object).and_then(|defs| {
        defs.iter()
            .find(|(_, d)| d.get("pattern").and_then(Value::as_str) == Some(pattern))
            .map(|(name, _)| name.as_str())
    });
    let v = show(value);
    match def {
        Some("duration") => super::duration::not_a_duration(&v),
        Some("identifier") => {
            format!("{v} is not a valid name; use letters, digits and underscores, not starting with a digit")
        }
        Some("metric_name") => format!(
            "{v} is not a valid Prometheus metric name; use letters, digits, underscores and colons, not starting with a digit"
        ),
        Some("label_name") => format!(
            "{v} is not a valid Prometheus label name; use letters, digits and underscores, not starting with a digit"
        ),
        _ => format!("{v} does not match the pattern {pattern}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(instance: Value) -> Vec<(String, String)> {
        let schema: Value = serde_json::from_str(super::super::schema::SCHEMA_TEXT).expect("schema is JSON");
        let validator = jsonschema::draft202012::new(&schema).expect("schema compiles");
        validator.iter_errors(&instance).flat_map(|e| describe(&schema, &e)).map(|p| (p.pointer, p.message)).collect()
    }

    fn signal() -> Value {
        json!({
            "name": "s", "database": "db", "labels": ["l"], "window": 3, "success": "true",
            "metrics": {"up": {"name": "u", "help": ""}, "error": {"name": "e", "help": ""}},
            "query": "select 1"
        })
    }

    #[test]
    fn key_names() {
        assert_eq!(key_name("/signals/0/window"), "window");
        assert_eq!(key_name("/signals/0/labels/1"), "labels[1]");
        assert_eq!(key_name("/signals/0"), "signals[0]");
        assert_eq!(key_name("/databases/a~1b"), "a/b");
        assert_eq!(key_name(""), "the rules file");
    }

    #[test]
    fn messages_name_the_key_and_what_was_found() {
        let mut s = signal();
        s["window"] = json!(-1);
        s["windw"] = json!(3);
        s["interval"] = json!("5 minutes");
        s["labels"] = json!(["l", "l"]);
        s["values"] = json!({"x": "int"});
        let got = problems(json!({"version": 2, "signals": [s], "databases": {"db": {"dsn": "x", "dsn_file": "y"}}}));
        let want = [
            ("/version", "version: 2 is not a format version this exporter reads; write version: 1"),
            ("/signals/0/windw", "unknown key 'windw'; did you mean 'window'?"),
            ("/signals/0/window", "window: -1 is less than the minimum of 1"),
            ("/signals/0/interval", "interval: '5 minutes' is not a duration; write e.g. 500ms, 30s, 1m, 3h or 1h30m"),
            ("/signals/0/labels/1", "labels: 'l' is listed more than once"),
            ("/signals/0/values/x", "x: 'int' is not one of: integer, float, text, bool, timestamp"),
            ("/databases/db", "db: give only one of 'dsn' or 'dsn_file', not several"),
        ];
        assert_exactly(&got, &want);
    }

    /// `got` holds exactly the (pointer, message) pairs of `want`, in any order.
    fn assert_exactly(got: &[(String, String)], want: &[(&str, &str)]) {
        for (pointer, message) in want {
            assert!(
                got.contains(&(pointer.to_string(), message.to_string())),
                "missing {pointer}: {message}\ngot: {got:#?}"
            );
        }
        assert_eq!(got.len(), want.len(), "{got:#?}");
    }

    #[test]
    fn types_required_and_alternatives() {
        let mut s = signal();
        s.as_object_mut().map(|o| o.remove("query"));
        s["window"] = json!("three");
        s["targets"] = json!([{"l": 5}]);
        let got = problems(json!({"version": 1, "signals": [s], "databases": {"db": {}, "bad-name": {"dsn": "x"}}}));
        let want = [
            ("/signals/0", "missing required key 'query'"),
            ("/signals/0/window", "window: expected an integer, found the string 'three'"),
            ("/signals/0/targets/0/l", "l: expected a string or a list of them, found the number 5"),
            ("/databases/db", "db: give one of 'dsn' or 'dsn_file'"),
            (
                "/databases/bad-name",
                "key 'bad-name' is not a valid name; use letters, digits and underscores, not starting with a digit",
            ),
        ];
        assert_exactly(&got, &want);
    }

    #[test]
    fn suggestions_only_when_close() {
        let allowed: Vec<String> = ["signals", "databases", "version", "metrics"].map(String::from).to_vec();
        assert_eq!(closest("signal", &allowed), Some("signals"));
        assert_eq!(closest("Version", &allowed), Some("version"));
        assert_eq!(closest("rules", &allowed), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
