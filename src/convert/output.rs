//! The rules file a conversion produces: a small model of what converters fill in, and the one
//! writer that prints it as YAML with the schema modeline and comments at their places.
//!
//! The writer prints YAML by hand rather than through serde: comments (what was left out, and
//! where it came from) must stand at the place of the thing they are about, and queries read best
//! as block scalars. Every other scalar is written as a JSON string, which YAML reads as a
//! double-quoted scalar, so no value can be misread as another type.

/// The modeline's schema reference: the schema file beside a rules file in this repository's
/// layout, as the shipped rules files write it.
pub const SCHEMA_MODELINE: &str = "# yaml-language-server: $schema=../schemas/rules.schema.json";

/// The rules file.
#[derive(Default)]
pub(super) struct RulesOut {
    pub(super) databases: Vec<DatabaseOut>,
    pub(super) metrics: Vec<EntryOut>,
}

/// An entry of `databases:`.
pub(super) struct DatabaseOut {
    pub(super) name: String,
    pub(super) dsn: String,
    pub(super) comments: Vec<String>,
}

/// An item of `metrics:`: a rule, or a comment where something could not become one.
pub(super) enum EntryOut {
    Rule(RuleOut),
    Comment(String),
}

/// A metric rule.
#[derive(Default)]
pub(super) struct RuleOut {
    pub(super) name: String,
    pub(super) databases: Vec<String>,
    pub(super) database_label: Option<String>,
    pub(super) interval: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) query: String,
    pub(super) families: Vec<FamilyOut>,
    /// Said above the rule: where it came from, what of it was left out.
    pub(super) comments: Vec<String>,
}

/// A family's type as the rules file writes it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum KindOut {
    Gauge,
    Counter,
}

/// Where a family's value comes from.
pub(super) enum ValueOut {
    /// One column.
    Column(String),
    /// Several columns unpivoted, the column's name in `label`.
    Columns { columns: Vec<String>, label: String },
}

/// A metric family.
pub(super) struct FamilyOut {
    pub(super) name: String,
    pub(super) help: String,
    pub(super) kind: KindOut,
    pub(super) key_labels: Vec<String>,
    pub(super) static_labels: Vec<(String, String)>,
    pub(super) value: ValueOut,
    pub(super) comments: Vec<String>,
}

impl FamilyOut {
    pub(super) fn new(name: &str, help: &str, kind: KindOut, value: ValueOut) -> FamilyOut {
        FamilyOut {
            name: name.to_string(),
            // The schema wants a help text; the peers allow none, and export an empty one.
            help: if help.trim().is_empty() { name.to_string() } else { help.to_string() },
            kind,
            key_labels: Vec::new(),
            static_labels: Vec::new(),
            value,
            comments: Vec::new(),
        }
    }
}

/// A peer's SQL as a query template that renders to itself (`{{`, `{%` and `{#` stay text), without
/// the trailing semicolon that would stop it being wrapped.
pub(super) fn sql_template(query: &str) -> String {
    let query = query.trim().trim_end_matches(';').trim_end();
    if query.contains("{{") || query.contains("{%") || query.contains("{#") {
        format!("{{% raw %}}{query}{{% endraw %}}")
    } else {
        query.to_string()
    }
}

/// A scalar YAML reads back as exactly this string.
pub(super) fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn comment_lines(out: &mut String, indent: &str, text: &str) {
    for line in text.lines() {
        out.push_str(indent);
        out.push_str("# ");
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quoted(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// The rules YAML of `rules`, converted from the format the command line calls `format`.
pub(super) fn render(rules: &RulesOut, format: &str) -> String {
    let mut out = String::new();
    out.push_str(SCHEMA_MODELINE);
    out.push('\n');
    out.push_str(&format!(
        "# Converted from a {} configuration by sql-signal-exporter --convert {} ({}).\n",
        format,
        format,
        crate::VERSION
    ));
    out.push_str("version: 1\n");
    out.push_str("databases:\n");
    for db in &rules.databases {
        for c in &db.comments {
            comment_lines(&mut out, "  ", c);
        }
        out.push_str(&format!("  {}:\n    dsn: {}\n", db.name, quoted(&db.dsn)));
    }
    out.push_str("metrics:\n");
    for entry in &rules.metrics {
        match entry {
            EntryOut::Comment(c) => comment_lines(&mut out, "  ", c),
            EntryOut::Rule(rule) => render_rule(&mut out, rule),
        }
    }
    if rules.metrics.iter().all(|e| matches!(e, EntryOut::Comment(_))) {
        // `metrics: []` keeps the file valid when nothing at all converted.
        out.push_str("  []\n");
    }
    out
}

fn render_rule(out: &mut String, rule: &RuleOut) {
    for c in &rule.comments {
        comment_lines(out, "  ", c);
    }
    out.push_str(&format!("  - name: {}\n", quoted(&rule.name)));
    match rule.databases.as_slice() {
        [one] => out.push_str(&format!("    database: {}\n", quoted(one))),
        many => out.push_str(&format!("    database: {}\n", list(many))),
    }
    if let Some(label) = &rule.database_label {
        out.push_str(&format!("    database_label: {}\n", quoted(label)));
    }
    if let Some(interval) = &rule.interval {
        out.push_str(&format!("    interval: {}\n", quoted(interval)));
    }
    if let Some(timeout) = &rule.timeout {
        out.push_str(&format!("    timeout: {}\n", quoted(timeout)));
    }
    out.push_str("    query: |-\n");
    for line in rule.query.trim().lines() {
        if line.trim().is_empty() {
            out.push('\n');
        } else {
            out.push_str("      ");
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out.push_str("    families:\n");
    for family in &rule.families {
        render_family(out, family);
    }
}

fn render_family(out: &mut String, family: &FamilyOut) {
    for c in &family.comments {
        comment_lines(out, "      ", c);
    }
    out.push_str(&format!("      - name: {}\n", quoted(&family.name)));
    out.push_str(&format!("        help: {}\n", quoted(&family.help)));
    let kind = match family.kind {
        KindOut::Gauge => "gauge",
        KindOut::Counter => "counter",
    };
    out.push_str(&format!("        type: {kind}\n"));
    // Every family says its key labels, so a rule's default never applies by surprise.
    out.push_str(&format!("        key_labels: {}\n", list(&family.key_labels)));
    if !family.static_labels.is_empty() {
        let pairs: Vec<String> =
            family.static_labels.iter().map(|(k, v)| format!("{}: {}", quoted(k), quoted(v))).collect();
        out.push_str(&format!("        static_labels: {{ {} }}\n", pairs.join(", ")));
    }
    match &family.value {
        ValueOut::Column(c) => out.push_str(&format!("        value: {}\n", quoted(c))),
        ValueOut::Columns { columns, label } => {
            out.push_str(&format!("        values: {}\n", list(columns)));
            out.push_str(&format!("        value_label: {}\n", quoted(label)));
        }
    }
    // The peer's names are kept as they are, so its dashboards keep working, although Prometheus's
    // conventions would want otherwise.
    let ends_with = |suffix: &str| family.name.ends_with(suffix);
    if family.kind == KindOut::Counter && !ends_with("_total") {
        out.push_str("        require_total_suffix: false\n");
    }
    let reserved = ["_count", "_sum", "_bucket"].iter().any(|s| ends_with(s));
    if reserved || (family.kind == KindOut::Gauge && ends_with("_total")) {
        out.push_str("        legacy_name: true\n");
    }
}
