//! Stage 1: the workflow file exactly as its author wrote it (serde types, spans kept).
//!
//! Unknown keys are errors (`deny_unknown_fields`): a typo such as `compensation = ...` must not
//! silently become a step without a compensation.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workflow {
    pub name: Spanned<String>,
    #[serde(default)]
    pub version: Option<u32>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub defaults: Option<Defaults>,
    #[serde(default, rename = "step")]
    pub steps: Vec<Spanned<Step>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    pub timeout: Option<Spanned<String>>,
    pub retry: Option<Spanned<Retry>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Total attempts, the first one included.
    pub attempts: Option<u32>,
    /// Delay before the first retry.
    pub backoff: Option<Spanned<String>>,
    /// Upper bound of the delay.
    pub max_backoff: Option<Spanned<String>>,
    /// Growth of the delay from one retry to the next.
    pub multiplier: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub name: Spanned<String>,
    pub command: Spanned<String>,
    pub compensate: Option<Spanned<String>>,
    pub input: Option<Spanned<String>>,
    pub compensate_input: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub retry: Option<Spanned<Retry>>,
}
