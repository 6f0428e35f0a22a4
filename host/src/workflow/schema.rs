//! JSON Schema checks (the `jsonschema` crate): a workflow's `input_schema` is compiled when
//! the workflow loads and checked against each saga's input at start.

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

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Schema")
    }
}

/// Compile `schema`, or say why it is not a valid JSON Schema.
pub fn compile(schema: &Value) -> Result<Schema, String> {
    jsonschema::validator_for(schema).map(|v| Schema(Arc::new(v), Arc::new(schema.clone()))).map_err(|e| e.to_string())
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
