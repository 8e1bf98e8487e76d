//! Which result columns a rule reads, and what it needs of each: one list that the loader's SQL-text
//! warning and `--check-rules --db`'s column check both read.

use super::model::{AbsentKeyColumns, FamilyNaming, NameKey, Rule, RuleKind, ValueType};
use super::span;

/// What a rule does with a column, and so which kinds of value it can read from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Anything decodable (label values, text values, metric values).
    Any,
    /// Anything decodable, or no such column (a key label with `absent_key_columns: empty`).
    AnyIfPresent,
    /// `order_by`: compared as times or numbers.
    Order,
    Value(ValueType),
}

impl Need {
    /// How the need reads in a message: "cannot be read as an integer".
    pub fn wanted(self) -> &'static str {
        match self {
            Need::Any | Need::AnyIfPresent => "a value",
            Need::Order => "an order (a time or a number)",
            Need::Value(ValueType::Integer) => "an integer",
            Need::Value(ValueType::Float) => "a float",
            Need::Value(ValueType::Bool) => "a bool",
            Need::Value(ValueType::Text) => "a text",
            Need::Value(ValueType::Timestamp) => "a time",
        }
    }
}

/// One column a rule reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnUse {
    pub column: String,
    /// What the column is to the rule, for messages: "a target label", "a value of type integer".
    pub role: String,
    pub need: Need,
    /// Where the rules file names it, as a JSON pointer below the rule (`labels/0`).
    pub key: String,
}

/// The columns `rule` reads, in the order the rules file names them.
pub fn columns_read(rule: &Rule) -> Vec<ColumnUse> {
    let mut out = Vec::new();
    let mut push = |column: &str, role: String, need: Need, key: String| {
        out.push(ColumnUse { column: column.to_string(), role, need, key })
    };
    match &rule.kind {
        RuleKind::Signal(s) => {
            for (i, l) in s.labels.iter().enumerate() {
                push(l, "a target label".into(), Need::Any, format!("labels/{i}"));
            }
            if let Some(c) = &s.order_by {
                push(c, "order_by".into(), Need::Order, "order_by".into());
            }
            if let Some(f) = &s.freshness {
                push(&f.column, "freshness".into(), Need::Value(ValueType::Timestamp), "freshness/column".into());
            }
            for (name, ty) in &s.values {
                let key = format!("values/{}", span::escape(name));
                push(name, format!("a value of type {}", ty.as_str()), Need::Value(*ty), key);
            }
        }
        RuleKind::Metric(m) => {
            for (i, f) in m.families.iter().enumerate() {
                if let FamilyNaming::FromColumn(from) = &f.naming {
                    if let NameKey::Column(column) = &from.key {
                        let role = format!("the key naming the families of {}", f.name);
                        push(column, role, Need::Any, format!("families/{i}/name_from/column"));
                    }
                }
                let need = match f.absent_key_columns {
                    AbsentKeyColumns::Fail => Need::Any,
                    AbsentKeyColumns::Empty => Need::AnyIfPresent,
                };
                for (j, (l, c)) in f.key_labels.iter().zip(&f.key_columns).enumerate() {
                    push(c, format!("key label '{l}' of {}", f.name), need, format!("families/{i}/key_labels/{j}"));
                }
                for (c, key) in f.values.columns() {
                    push(c, format!("a value of {}", f.name), Need::Any, format!("families/{i}/{key}"));
                }
                if let Some(c) = &f.created {
                    push(c, format!("the creation time of {}", f.name), Need::Order, format!("families/{i}/created"));
                }
            }
        }
    }
    out
}
