//! The JSON Schema of rules files (`schemas/rules.schema.json`), embedded so the binary checks files
//! without the repository, and compiled once per load.
//!
//! Compiled per load and dropped after it, not kept for the life of the process: the compiled
//! validator and the schema's JSON value hold about 0.5 MiB of heap that an idle exporter would
//! otherwise carry for days to serve a reload that may never come; compiling adds 2–5 ms to a
//! reload (README, "Performance"). `crate::resident` gives the freed pages back after each load.

/// The JSON Schema of rules files.
pub const SCHEMA_TEXT: &str = include_str!("../../schemas/rules.schema.json");

/// The schema of one load: its JSON value, for turning its errors into messages, and its validator.
pub struct CompiledSchema {
    pub value: serde_json::Value,
    pub validator: jsonschema::Validator,
}

impl CompiledSchema {
    /// Parses and compiles the embedded schema (both checked by tests, so neither can fail at run time).
    pub fn compile() -> CompiledSchema {
        let value: serde_json::Value =
            serde_json::from_str(SCHEMA_TEXT).expect("the embedded schema is valid JSON (checked by tests)");
        let validator = jsonschema::draft202012::new(&value).expect("the embedded schema compiles (checked by tests)");
        CompiledSchema { value, validator }
    }
}
