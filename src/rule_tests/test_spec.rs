//! The serde shapes of a rule test file, as `schemas/rule-tests.schema.json` describes them. The
//! schema is checked first (with positions); these shapes then only carry what it admitted.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TestFileSpec {
    #[allow(dead_code)] // checked by the schema: `version: 1`
    pub version: u32,
    /// Rules files, relative to the test file.
    pub rule_files: Vec<String>,
    /// `${VAR}` values the rules files are loaded with, before the process environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub cases: Vec<CaseSpec>,
}

/// One case: one evaluation (fixtures and expectations at the top) or several in sequence. (No
/// `deny_unknown_fields` here and in [`StepSpec`]: serde cannot combine it with `flatten`; the
/// schema refuses unknown keys.)
#[derive(Debug, Deserialize)]
pub(super) struct CaseSpec {
    pub name: String,
    /// The rules evaluated; every rule of the files when absent.
    #[serde(default)]
    pub rules: Option<Vec<String>>,
    #[serde(flatten)]
    pub step: StepSpec,
    #[serde(default)]
    pub evaluations: Vec<StepSpec>,
}

/// One evaluation: its fixtures and what it must give.
#[derive(Debug, Deserialize, Default)]
pub(super) struct StepSpec {
    #[serde(default)]
    pub tables: BTreeMap<String, TableSpec>,
    #[serde(default)]
    pub responses: BTreeMap<String, ResponseSpec>,
    #[serde(default)]
    pub expect: Option<ExpectSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TableSpec {
    /// `name type` each.
    pub columns: Vec<String>,
    #[serde(default)]
    pub rows: Vec<Vec<serde_json::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResponseSpec {
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A YAML value sent as JSON.
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    /// A body sent as written (not JSON, truncated JSON).
    #[serde(default)]
    pub body_text: Option<String>,
    #[serde(default)]
    pub failure: Option<FailureSpec>,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(super) enum FailureSpec {
    Timeout,
    Refused,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ExpectSpec {
    #[serde(default)]
    pub series: Option<SeriesSpec>,
    #[serde(default)]
    pub targets: Vec<TargetSpec>,
    #[serde(default)]
    pub absent: Vec<String>,
    #[serde(default)]
    pub other_series: Option<OtherSeriesSpec>,
    #[serde(default)]
    pub failing: Vec<String>,
}

/// Exposition text, exact over the families it names; or blocks, each exact over a selector.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum SeriesSpec {
    Text(String),
    Blocks(Vec<SeriesBlockSpec>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SeriesBlockSpec {
    pub select: String,
    pub samples: String,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum OtherSeriesSpec {
    Allowed,
    Forbidden,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TargetSpec {
    #[serde(default)]
    pub rule: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub state: String,
    #[serde(default)]
    pub reason: Option<String>,
}
