//! The rules file as written: serde shapes that mirror the JSON Schema.
//!
//! The schema has already checked types, enums and required keys by the time these deserialize, so
//! they only carry the values to the builders ([`super::signal_rule`], [`super::metric_rule`],
//! [`super::database`]). Enums the schema restricts are serde enums of the model: nothing re-parses
//! them from strings.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::model::{AbsentKeyColumns, BucketCounts, MetricKind, OnEmpty, OnError, OnNull, ValueType};

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
    pub(super) database: Option<String>,
    #[serde(flatten)]
    pub(super) on_endpoint: OnEndpointSpec,
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
    pub(super) database: Option<OneOrMany>,
    #[serde(flatten)]
    pub(super) on_endpoint: OnEndpointSpec,
    pub(super) queries: Option<BTreeMap<String, String>>,
    pub(super) on_empty: Option<OnEmpty>,
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
    pub(super) query: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct FamilySpec {
    pub(super) query: Option<String>,
    /// Exactly one of `name` and `name_from` (the schema's `oneOf`).
    pub(super) name: Option<String>,
    pub(super) name_from: Option<NameFromSpec>,
    /// With `name_from`: per generated name, its own type and help.
    #[serde(default)]
    pub(super) overrides: BTreeMap<String, OverrideSpec>,
    pub(super) help: String,
    #[serde(rename = "type")]
    pub(super) kind: Option<MetricKind>,
    pub(super) key_labels: Option<Vec<String>>,
    /// Per key label, the column it reads when not the column of its own name.
    #[serde(default)]
    pub(super) key_columns: BTreeMap<String, String>,
    pub(super) absent_key_columns: Option<AbsentKeyColumns>,
    #[serde(default)]
    pub(super) text_values: BTreeMap<String, f64>,
    #[serde(default)]
    pub(super) static_labels: BTreeMap<String, String>,
    pub(super) value: Option<String>,
    pub(super) values: Option<Vec<String>>,
    pub(super) value_label: Option<String>,
    pub(super) on_null: Option<OnNull>,
    pub(super) on_empty: Option<OnEmpty>,
    pub(super) on_error: Option<OnError>,
    pub(super) require_total_suffix: Option<bool>,
    pub(super) legacy_name: Option<bool>,
    pub(super) histogram: Option<HistogramSpec>,
    pub(super) summary: Option<SummarySpec>,
    pub(super) stateset: Option<StateSetSpec>,
    pub(super) unit: Option<String>,
    pub(super) created: Option<String>,
}

/// `name_from:` of a family, as written.
#[derive(Deserialize)]
pub(super) struct NameFromSpec {
    /// Exactly one of `column` and `columns` (the schema's `oneOf`).
    pub(super) column: Option<String>,
    pub(super) columns: Option<EachColumnSpec>,
    pub(super) prefix: String,
    #[serde(default)]
    pub(super) suffix: String,
}

/// `name_from: {columns: each}`: the one value `columns` takes.
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum EachColumnSpec {
    Each,
}

/// One entry of a `name_from` family's `overrides`.
#[derive(Deserialize)]
pub(super) struct OverrideSpec {
    #[serde(rename = "type")]
    pub(super) kind: Option<MetricKind>,
    pub(super) help: Option<String>,
}

/// A histogram's columns: `observe` with `buckets` (raw values), or `le`, `bucket`, `sum` (bucket
/// rows); the schema allows one shape or the other.
#[derive(Deserialize)]
pub(super) struct HistogramSpec {
    pub(super) observe: Option<String>,
    pub(super) buckets: Option<Vec<f64>>,
    pub(super) le: Option<String>,
    pub(super) bucket: Option<String>,
    pub(super) counts: Option<BucketCounts>,
    pub(super) sum: Option<String>,
    pub(super) count: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct SummarySpec {
    pub(super) quantile: String,
    pub(super) value: String,
    pub(super) sum: String,
    pub(super) count: String,
}

#[derive(Deserialize)]
pub(super) struct StateSetSpec {
    pub(super) column: String,
    pub(super) states: Vec<String>,
}

/// An entry of `endpoints:`, as written.
#[derive(Deserialize)]
pub(super) struct EndpointSpec {
    pub(super) url: String,
    #[serde(default)]
    pub(super) headers: BTreeMap<String, String>,
    pub(super) basic_auth: Option<BasicAuthSpec>,
    pub(super) bearer_token_file: Option<String>,
    pub(super) tls: Option<TlsSpec>,
    pub(super) proxy: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) max_body_bytes: Option<usize>,
}

#[derive(Deserialize)]
pub(super) struct BasicAuthSpec {
    pub(super) username: String,
    pub(super) password: Option<String>,
    pub(super) password_file: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct TlsSpec {
    pub(super) ca_file: Option<String>,
    pub(super) cert_file: Option<String>,
    pub(super) key_file: Option<String>,
    pub(super) server_name: Option<String>,
    #[serde(default)]
    pub(super) insecure_skip_verify: bool,
}

/// The keys a rule on an endpoint has besides its database-rule keys.
#[derive(Deserialize, Default)]
pub(super) struct OnEndpointSpec {
    pub(super) endpoint: Option<String>,
    pub(super) requests: Option<BTreeMap<String, RequestSpec>>,
    pub(super) up: Option<DescriptorSpec>,
    pub(super) latency: Option<DescriptorSpec>,
}

#[derive(Deserialize)]
pub(super) struct RequestSpec {
    #[serde(default)]
    pub(super) path: String,
    pub(super) method: Option<String>,
    #[serde(default)]
    pub(super) query: BTreeMap<String, String>,
    pub(super) body: Option<String>,
}
