//! The rules file as written: serde shapes that mirror the JSON Schema.
//!
//! The schema has already checked types, enums and required keys by the time these deserialize, so
//! they only carry the values to the builders ([`super::signal_rule`], [`super::metric_rule`],
//! [`super::database`]). Enums the schema restricts are serde enums of the model: nothing re-parses
//! them from strings.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::model::{MetricKind, OnEmpty, OnError, OnNull, ValueType};

#[derive(Deserialize)]
pub(super) struct DatabaseSpec {
    pub(super) dsn: Option<String>,
    pub(super) dsn_file: Option<String>,
    pub(super) max_connections: Option<usize>,
    pub(super) connect_timeout: Option<String>,
    pub(super) lock_timeout: Option<String>,
    pub(super) password_file: Option<String>,
    pub(super) password_command: Option<Vec<String>>,
    pub(super) password_command_timeout: Option<String>,
    pub(super) password_cache_ttl: Option<String>,
    pub(super) pooler: Option<super::model::Pooler>,
}

#[derive(Deserialize)]
pub(super) struct SignalSpec {
    pub(super) name: String,
    pub(super) database: String,
    pub(super) interval: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) max_rows: Option<usize>,
    pub(super) max_series: Option<usize>,
    pub(super) labels: Vec<String>,
    pub(super) targets: Option<Vec<BTreeMap<String, OneOrMany>>>,
    pub(super) window: usize,
    pub(super) min_rows: Option<usize>,
    pub(super) order_by: Option<String>,
    pub(super) freshness: Option<FreshnessSpec>,
    #[serde(default)]
    pub(super) values: BTreeMap<String, ValueType>,
    pub(super) success: String,
    pub(super) metrics: SignalMetricsSpec,
    #[serde(default)]
    pub(super) reasons: BTreeMap<String, String>,
    pub(super) reason_label: Option<String>,
    #[serde(default = "empty_object")]
    pub(super) vars: serde_json::Value,
    pub(super) query: String,
}

pub(super) fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
pub(super) struct FreshnessSpec {
    pub(super) column: String,
    pub(super) max_age: String,
}

#[derive(Deserialize)]
pub(super) struct SignalMetricsSpec {
    pub(super) up: DescriptorSpec,
    pub(super) error: DescriptorSpec,
}

#[derive(Deserialize)]
pub(super) struct DescriptorSpec {
    pub(super) name: String,
    pub(super) help: String,
}

/// One entry of `metrics:`, as written.
#[derive(Deserialize)]
pub(super) struct MetricRuleSpec {
    pub(super) name: String,
    pub(super) database: OneOrMany,
    pub(super) database_label: Option<String>,
    pub(super) interval: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) max_rows: Option<usize>,
    pub(super) max_series: Option<usize>,
    #[serde(default)]
    pub(super) key_labels: Vec<String>,
    pub(super) families: Vec<FamilySpec>,
    #[serde(default = "empty_object")]
    pub(super) vars: serde_json::Value,
    pub(super) query: String,
}

#[derive(Deserialize)]
pub(super) struct FamilySpec {
    pub(super) name: String,
    pub(super) help: String,
    #[serde(rename = "type")]
    pub(super) kind: Option<MetricKind>,
    pub(super) key_labels: Option<Vec<String>>,
    #[serde(default)]
    pub(super) static_labels: BTreeMap<String, String>,
    pub(super) value: Option<String>,
    pub(super) values: Option<Vec<String>>,
    pub(super) value_label: Option<String>,
    pub(super) on_null: Option<OnNull>,
    pub(super) on_empty: Option<OnEmpty>,
    pub(super) on_error: Option<OnError>,
    pub(super) require_total_suffix: Option<bool>,
}
