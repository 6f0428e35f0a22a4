//! JSON Schema checks (the `jsonschema` crate). Each schema is compiled once, when what
//! declares it loads, and checked where its value is made:
//!
//! - a workflow's `input_schema`, against each saga's input at start;
//! - a `wait` step's `schema`, against a signal's payload when it is sent;
//! - an external command's `input_schema` and `output_schema` ([`super::external`]), against
//!   its payload before it is sent and its result when it comes back;
//! - a plugin command's `input-schema` and `output-schema` (from `describe()`), by the worker,
//!   against the payload before the plugin runs and the result it returns.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

/// A compiled schema and the JSON it was compiled from. Cheap to clone; equal when their
/// JSON is.
#[derive(Clone)]
pub struct Schema(Arc<jsonschema::Validator>, Arc<Value>);

impl PartialEq for Schema {
    fn eq(&self, other: &Self) -> bool {
        self.1 == other.1
    }
}

impl Eq for Schema {}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Schema")
    }
}

/// Compile `schema`, or say why it is not a valid JSON Schema.
pub fn compile(schema: &Value) -> Result<Schema, String> {
    jsonschema::validator_for(schema).map(|v| Schema(Arc::new(v), Arc::new(schema.clone()))).map_err(|e| e.to_string())
}

/// A schema as a workflow file gives it under `key`: a path to a JSON file (relative to the
/// workflow `file`) or an inline table; read and compiled, or the message that says why not.
pub fn load(file: &Path, key: &str, value: &toml::Value) -> Result<Schema, String> {
    let json = match value {
        toml::Value::String(path) => {
            let full = file.parent().unwrap_or(Path::new(".")).join(path);
            let text =
                std::fs::read_to_string(&full).map_err(|e| format!("{key}: cannot read {}: {e}", full.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("{key}: {} is not JSON: {e}", full.display()))?
        }
        toml::Value::Table(_) => serde_json::to_value(value).map_err(|e| format!("{key}: {e}"))?,
        _ => return Err(format!("{key} must be a path to a JSON file or an inline table")),
    };
    compile(&json).map_err(|e| format!("{key} is not a valid JSON Schema: {e}"))
}

/// Most violations one check reports: enough to fix a payload, bounded for a hostile one.
pub const MAX_VIOLATIONS: usize = 20;

impl Schema {
    /// The schema as JSON.
    pub fn json(&self) -> &Value {
        &self.1
    }

    /// Every violation of `value` (up to [`MAX_VIOLATIONS`]), each as "`/json/pointer`: what
    /// is wrong"; empty when it fits. The pointer of the whole value is `/`.
    pub fn violations(&self, value: &Value) -> Vec<String> {
        self.0
            .iter_errors(value)
            .take(MAX_VIOLATIONS)
            .map(|e| {
                let path = e.instance_path().to_string();
                let path = if path.is_empty() { "/".to_owned() } else { path };
                format!("{path}: {e}")
            })
            .collect()
    }
}
