//! The JSON Schema of rules files (`schemas/rules.schema.json`), embedded so the binary checks files
//! without the repository, and compiled once per process.

use std::sync::OnceLock;

/// The JSON Schema of rules files.
pub const SCHEMA_TEXT: &str = include_str!("../../schemas/rules.schema.json");

/// The schema as a JSON value, for turning its errors into messages.
pub fn value() -> &'static serde_json::Value {
    static SCHEMA: OnceLock<serde_json::Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        serde_json::from_str(SCHEMA_TEXT).expect("the embedded schema is valid JSON (checked by tests)")
    })
}

pub fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR
        .get_or_init(|| jsonschema::draft202012::new(value()).expect("the embedded schema compiles (checked by tests)"))
}
