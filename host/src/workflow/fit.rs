//! What the schemas tell before anything runs: that each command step gives its command
//! every field the command's input schema requires.
//!
//! Only what can be known for sure is checked, so a workflow this refuses would fail at run
//! time. A payload's keys are known when the expression that builds it is a map literal with
//! literal keys (`input = "{ 'sku': item.sku }"`); a compensation without `compensate_input`
//! gets its step's result, whose keys are known when the step's command declares them in its
//! output schema's `properties`. Anything else (no schema, no top-level `required`, computed
//! keys, an input passed through whole) is left to the checks at run time.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::resolved::{StepKind, Workflow};
use super::{Catalog, DefinitionError};

/// The JSON Schemas of one command: of its payload and of its result.
#[derive(Debug, Clone, Default)]
pub struct Schemas {
    pub input: Option<Value>,
    pub output: Option<Value>,
}

/// Check every workflow of `catalog` against the schemas of the commands in `plugins` (by
/// name) and of the external commands each declares; the workflows that fail are left out of
/// the catalog, and the errors say why.
pub fn check(catalog: &mut Catalog, plugins: &BTreeMap<String, Schemas>) -> Vec<DefinitionError> {
    let mut errors = Vec::new();
    for wf in catalog.workflows.values() {
        errors.extend(check_workflow(wf, plugins));
    }
    let refused: BTreeSet<String> = errors.iter().filter_map(|e| e.workflow.clone()).collect();
    catalog.workflows.retain(|name, _| !refused.contains(name));
    errors
}

/// The errors of one workflow.
pub fn check_workflow(wf: &Workflow, plugins: &BTreeMap<String, Schemas>) -> Vec<DefinitionError> {
    let schemas = |command: &str| -> Schemas {
        if let Some(s) = plugins.get(command) {
            return s.clone();
        }
        match wf.external(command) {
            Some(e) => Schemas {
                input: e.input_schema.as_ref().map(|s| s.json().clone()),
                output: e.output_schema.as_ref().map(|s| s.json().clone()),
            },
            None => Schemas::default(),
        }
    };
    let mut errors = Vec::new();
    let mut error = |step: &super::resolved::Step, message: String| {
        errors.push(DefinitionError {
            file: wf.source.clone(),
            workflow: Some(wf.name.clone()),
            line: Some(step.line),
            step: Some(step.name.clone()),
            message,
        });
    };
    for (_, step) in wf.all_steps() {
        let StepKind::Command(c) = &step.kind else { continue };
        let forward = schemas(&c.command);
        if let Some(keys) = c.input.as_ref().and_then(|e| e.literal_keys()) {
            let missing = missing(forward.input.as_ref(), &keys);
            if !missing.is_empty() {
                error(
                    step,
                    format!(
                        "command {:?} requires {} (its input schema), which this step's input never gives: add {} to input",
                        c.command,
                        list(&missing),
                        if missing.len() == 1 { "it" } else { "them" }
                    ),
                );
            }
        }
        let Some(compensate) = &c.compensate else { continue };
        let back = schemas(compensate);
        match &c.compensate_input {
            Some(e) => {
                if let Some(keys) = e.literal_keys() {
                    let missing = missing(back.input.as_ref(), &keys);
                    if !missing.is_empty() {
                        error(
                            step,
                            format!(
                                "compensation {compensate:?} requires {} (its input schema), which compensate_input never gives: add {} to compensate_input",
                                list(&missing),
                                if missing.len() == 1 { "it" } else { "them" }
                            ),
                        );
                    }
                }
            }
            None => {
                let Some(keys) = declared_properties(forward.output.as_ref()) else { continue };
                let missing = missing(back.input.as_ref(), &keys);
                if !missing.is_empty() {
                    let example: Vec<String> = missing.iter().map(|k| format!("'{k}': ...")).collect();
                    error(
                        step,
                        format!(
                            "compensation {compensate:?} requires {} (its input schema), but it gets the result of {:?}, which has only {} (its output schema): rename the field in one of the two commands, or set compensate_input = \"{{ {} }}\"",
                            list(&missing),
                            c.command,
                            if keys.is_empty() { "no fields".to_owned() } else { list(&keys) },
                            example.join(", ")
                        ),
                    );
                }
            }
        }
    }
    errors
}

/// The fields `schema` requires at its top level that `keys` does not hold, in its order.
fn missing(schema: Option<&Value>, keys: &[String]) -> Vec<String> {
    let Some(required) = schema.and_then(|s| s.get("required")).and_then(Value::as_array) else {
        return Vec::new();
    };
    required.iter().filter_map(Value::as_str).filter(|r| !keys.iter().any(|k| k == r)).map(str::to_owned).collect()
}

/// The property names an output schema declares, when it says what they all are: an object
/// schema with `properties` and nothing that lets other names in by pattern.
fn declared_properties(schema: Option<&Value>) -> Option<Vec<String>> {
    let schema = schema?.as_object()?;
    if schema.contains_key("patternProperties") || schema.contains_key("$ref") || schema.contains_key("allOf") {
        return None;
    }
    if schema.contains_key("anyOf") || schema.contains_key("oneOf") {
        return None;
    }
    Some(schema.get("properties")?.as_object()?.keys().cloned().collect())
}

/// `"a"`, `"a" and "b"`, `"a", "b" and "c"`.
fn list(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_read_as_prose() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(list(&names(&["a"])), "\"a\"");
        assert_eq!(list(&names(&["a", "b", "c"])), "\"a\", \"b\" and \"c\"");
    }

    #[test]
    fn only_declared_properties_count() {
        let keys = |v: Value| declared_properties(Some(&v));
        assert_eq!(keys(json!({"type": "object", "properties": {"id": {}}})), Some(vec!["id".to_owned()]));
        assert_eq!(keys(json!({"type": "object"})), None);
        assert_eq!(keys(json!({"properties": {"id": {}}, "patternProperties": {"^x": {}}})), None);
        assert_eq!(missing(Some(&json!({"required": ["loan_id", "id"]})), &["id".to_owned()]), vec!["loan_id"]);
        assert!(missing(Some(&json!({"type": "object"})), &[]).is_empty());
    }
}
