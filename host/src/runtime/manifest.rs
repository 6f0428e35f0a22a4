//! A plugin's manifest: `<plugin>.toml` beside `<plugin>.wasm`, what the host grants the
//! plugin beyond the empty sandbox. Without one, nothing is granted and the host's limits
//! apply.
//!
//! ```toml
//! [config]                                      # values the plugin reads
//! region = "eu-west-1"                          # written here
//! api_key = { env = "BATON_VAR_PAYMENT_KEY" }   # from the host's environment (BATON_VAR_* only)
//! cert = { file = "payment.cert.pem" }          # from a file, relative to the manifest
//!
//! [http]                                        # outbound HTTP, to these origins only
//! allow = ["https://api.example.com", "http://127.0.0.1:8080"]
//! timeout = "10s"                               # per request (default 10s)
//! max_response_kb = 1024                        # largest response body (default 1024)
//!
//! [limits]                                      # each at most the host's own
//! memory_mb = 32                                # linear memory of one command
//! cpu = "2s"                                    # CPU time of one command
//! concurrency = 4                               # commands at once (--plugin-concurrency wins)
//! ```
//!
//! Config values reach the plugin as the environment variables of its instance, by their
//! names (`std::env::var("region")` in Rust, `os.environ` in Python, `process.env` in JS):
//! every language reads its environment without a binding of ours, and an instance is made
//! per command, so a value is seen by no other plugin and outlives no command. The host
//! never logs them, never puts them in a saga record, and shows only their names
//! (`Debug` too). Nothing else is grantable: any other table or key is an error.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a manifest grants and limits. `Default`: no manifest, nothing granted.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// The file, when there is one.
    pub path: Option<PathBuf>,
    /// Config values by name, sorted. Never logged.
    config: Vec<(String, String)>,
    pub limits: Limits,
    /// Outbound HTTP; `None`: none.
    pub http: Option<std::sync::Arc<super::outbound::Grant>>,
}

/// Limits of one plugin, each lower than (or as) the host's; `None`: the host's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of linear memory one command may use.
    pub memory: Option<usize>,
    /// CPU time one command may spend.
    pub cpu: Option<Duration>,
    /// Commands of the plugin at once.
    pub concurrency: Option<usize>,
}

impl Limits {
    /// As JSON: `{"memory_mb", "cpu", "concurrency"}`, each only when set.
    pub fn json(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        if let Some(m) = self.memory {
            out.insert("memory_mb".into(), (m >> 20).into());
        }
        if let Some(c) = self.cpu {
            out.insert("cpu".into(), crate::workflow::duration::format(c).into());
        }
        if let Some(n) = self.concurrency {
            out.insert("concurrency".into(), n.into());
        }
        out.into()
    }
}

impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manifest")
            .field("path", &self.path)
            .field("config", &self.config_names())
            .field("limits", &self.limits)
            .field("http", &self.http)
            .finish()
    }
}

/// The host's own limits, which a manifest may lower, never raise.
#[derive(Debug, Clone, Copy)]
pub struct HostLimits {
    pub memory: usize,
    pub cpu: Duration,
}

/// Longest config value read from a file.
const MAX_FILE: u64 = 64 << 10;
/// Most commands of one plugin at once a manifest may ask for.
const MAX_CONCURRENCY: i64 = 1024;
/// The prefix of the host's environment variables a manifest may grant.
pub const ENV_PREFIX: &str = "BATON_VAR_";

impl Manifest {
    /// The names of the config values, sorted.
    pub fn config_names(&self) -> Vec<&str> {
        self.config.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The config values, for the instance's environment.
    pub(super) fn env(&self) -> &[(String, String)] {
        &self.config
    }

    /// The manifest of the plugin at `wasm` (`<stem>.toml` beside it), or the default when
    /// there is none. `env` reads the host's environment. The error names the manifest, the
    /// key and the fix.
    pub fn for_plugin(wasm: &Path, host: HostLimits, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let path = wasm.with_extension("toml");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(format!("cannot read its manifest {}: {e}", path.display())),
        };
        Self::parse(&path, &text, host, env).map_err(|e| format!("manifest {}: {e}", path.display()))
    }

    /// Parse the text of the manifest at `path`.
    pub fn parse(
        path: &Path,
        text: &str,
        host: HostLimits,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let line = e.span().map_or(1, |s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            format!("line {line}: {} (it is TOML)", e.message().trim_end())
        })?;
        let mut manifest = Manifest { path: Some(path.to_owned()), ..Self::default() };
        for (key, value) in &doc {
            match key.as_str() {
                "config" => manifest.config = config(path, value, env)?,
                "limits" => manifest.limits = limits(value, host)?,
                "http" => manifest.http = Some(std::sync::Arc::new(http(value)?)),
                other => return Err(unknown(other, &["config", "http", "limits"], "a manifest")),
            }
        }
        Ok(manifest)
    }
}

fn unknown(key: &str, known: &[&str], place: &str) -> String {
    let list: Vec<String> = known.iter().map(|k| k.to_string()).collect();
    let hint = match crate::workflow::closest(key, &list) {
        Some(near) => format!("did you mean {near:?}? "),
        None => String::new(),
    };
    format!(
        "unknown key {key:?} in {place}: {hint}a manifest grants only [config] values and [http] origins, and sets [limits] ({}); nothing else can be granted",
        known.join(", ")
    )
}

fn config(
    path: &Path,
    value: &toml::Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, String> {
    let table = value.as_table().ok_or("[config] must be a table of name = value")?;
    let mut out = Vec::with_capacity(table.len());
    for (name, value) in table {
        let valid = name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "config {name:?}: a name is 1 to 64 letters, digits and '_', not starting with a digit (the plugin reads it as an environment variable)"
            ));
        }
        let value = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Table(t) => source(path, name, t, env)?,
            _ => {
                return Err(format!(
                    "config {name:?}: a value is a string (quote it), {{ env = \"{ENV_PREFIX}...\" }} or {{ file = \"...\" }}"
                ));
            }
        };
        out.push((name.clone(), value));
    }
    Ok(out)
}

/// A value given by `{ env = ... }` or `{ file = ... }`.
fn source(path: &Path, name: &str, t: &toml::Table, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    if let Some(other) = t.keys().find(|k| *k != "env" && *k != "file") {
        return Err(format!(
            "config {name:?}: unknown key {other:?}: give {{ env = \"...\" }} or {{ file = \"...\" }}"
        ));
    }
    match (t.get("env"), t.get("file")) {
        (Some(toml::Value::String(var)), None) => {
            if !var.starts_with(ENV_PREFIX) || var.len() == ENV_PREFIX.len() {
                return Err(format!(
                    "config {name:?}: env = {var:?}: only variables named {ENV_PREFIX}* can be granted (so a manifest cannot read the host's other secrets): export {ENV_PREFIX}{} and name that",
                    name.to_ascii_uppercase()
                ));
            }
            env(var).ok_or_else(|| {
                format!("config {name:?}: {var} is not set in the host's environment: set it before starting the host, or write the value in the manifest")
            })
        }
        (None, Some(toml::Value::String(file))) => {
            let full = path.parent().unwrap_or(Path::new(".")).join(file);
            let meta = std::fs::metadata(&full)
                .map_err(|e| format!("config {name:?}: cannot read {}: {e}", full.display()))?;
            if meta.len() > MAX_FILE {
                return Err(format!("config {name:?}: {} is over {} KiB", full.display(), MAX_FILE >> 10));
            }
            let text = std::fs::read_to_string(&full)
                .map_err(|e| format!("config {name:?}: cannot read {} as UTF-8 text: {e}", full.display()))?;
            // A file written by an editor or `echo` ends with a newline that is not the value's.
            Ok(text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text).to_owned())
        }
        _ => {
            Err(format!("config {name:?}: give exactly one of {{ env = \"{ENV_PREFIX}...\" }} or {{ file = \"...\" }}"))
        }
    }
}

/// Default per-request timeout of outbound HTTP.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest per-request timeout a manifest may set.
const MAX_HTTP_TIMEOUT: Duration = Duration::from_secs(300);
/// Default and largest response body of outbound HTTP, in KiB.
const HTTP_RESPONSE_KB: i64 = 1024;
const MAX_HTTP_RESPONSE_KB: i64 = 64 << 10;

fn http(value: &toml::Value) -> Result<super::outbound::Grant, String> {
    let table = value.as_table().ok_or("[http] must be a table")?;
    let mut grant = super::outbound::Grant {
        allow: Vec::new(),
        timeout: HTTP_TIMEOUT,
        max_response: (HTTP_RESPONSE_KB as u64) << 10,
    };
    for (key, value) in table {
        match key.as_str() {
            "allow" => {
                let list = value
                    .as_array()
                    .ok_or("http.allow must be a list of origins, e.g. [\"https://api.example.com\"]")?;
                for v in list {
                    let text =
                        v.as_str().ok_or("http.allow: an origin is a string, e.g. \"https://api.example.com\"")?;
                    grant.allow.push(super::outbound::Origin::parse(text).map_err(|e| format!("http.allow: {e}"))?);
                }
            }
            "timeout" => {
                let text = value.as_str().ok_or("http.timeout must be a duration such as \"10s\"")?;
                let d = crate::workflow::duration::parse(text).map_err(|e| format!("http.timeout: {e}"))?;
                if d.is_zero() || d > MAX_HTTP_TIMEOUT {
                    return Err(format!(
                        "http.timeout must be longer than zero and at most {}",
                        crate::workflow::duration::format(MAX_HTTP_TIMEOUT)
                    ));
                }
                grant.timeout = d;
            }
            "max_response_kb" => match value.as_integer() {
                Some(kb) if (1..=MAX_HTTP_RESPONSE_KB).contains(&kb) => grant.max_response = (kb as u64) << 10,
                _ => {
                    return Err(format!(
                        "http.max_response_kb must be a whole number from 1 to {MAX_HTTP_RESPONSE_KB}"
                    ));
                }
            },
            other => return Err(unknown(other, &["allow", "timeout", "max_response_kb"], "[http]")),
        }
    }
    Ok(grant)
}

fn limits(value: &toml::Value, host: HostLimits) -> Result<Limits, String> {
    let table = value.as_table().ok_or("[limits] must be a table")?;
    let mut limits = Limits::default();
    for (key, value) in table {
        match key.as_str() {
            "memory_mb" => {
                let host_mb = (host.memory >> 20) as i64;
                match value.as_integer() {
                    Some(mb) if (1..=host_mb).contains(&mb) => limits.memory = Some((mb as usize) << 20),
                    _ => {
                        return Err(format!(
                            "limits.memory_mb must be a whole number of MiB from 1 to {host_mb}, the host's per-command limit (raise that with --memory-limit-mb)"
                        ));
                    }
                }
            }
            "cpu" => {
                let text = value.as_str().ok_or("limits.cpu must be a duration such as \"2s\"")?;
                let d = crate::workflow::duration::parse(text).map_err(|e| format!("limits.cpu: {e}"))?;
                if d.is_zero() || d > host.cpu {
                    return Err(format!(
                        "limits.cpu must be longer than zero and at most {}, the host's CPU time per command",
                        crate::workflow::duration::format(host.cpu)
                    ));
                }
                limits.cpu = Some(d);
            }
            "concurrency" => match value.as_integer() {
                Some(n) if (1..=MAX_CONCURRENCY).contains(&n) => limits.concurrency = Some(n as usize),
                _ => return Err(format!("limits.concurrency must be a whole number from 1 to {MAX_CONCURRENCY}")),
            },
            other => return Err(unknown(other, &["memory_mb", "cpu", "concurrency"], "[limits]")),
        }
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: HostLimits = HostLimits { memory: 64 << 20, cpu: Duration::from_secs(300) };

    fn parse(text: &str) -> Result<Manifest, String> {
        let env = |k: &str| (k == "BATON_VAR_KEY").then(|| "s3cret".to_owned());
        Manifest::parse(Path::new("/nowhere/p.toml"), text, HOST, &env)
    }

    #[test]
    fn values_from_the_manifest_and_the_environment() {
        let m = parse("[config]\nregion = \"eu\"\nkey = { env = \"BATON_VAR_KEY\" }\n[limits]\nmemory_mb = 16\ncpu = \"2s\"\nconcurrency = 3\n").unwrap();
        assert_eq!(m.env(), &[("key".to_owned(), "s3cret".to_owned()), ("region".to_owned(), "eu".to_owned())]);
        assert_eq!(
            m.limits,
            Limits { memory: Some(16 << 20), cpu: Some(Duration::from_secs(2)), concurrency: Some(3) }
        );
        assert!(!format!("{m:?}").contains("s3cret"), "Debug shows names only: {m:?}");
    }

    #[test]
    fn http_grants_origins_with_a_timeout_and_a_size_cap() {
        let m = parse("[http]\nallow = [\"https://api.example.com\", \"http://127.0.0.1:8080\"]\ntimeout = \"2s\"\nmax_response_kb = 8\n").unwrap();
        let g = m.http.unwrap();
        assert_eq!(g.allow.len(), 2);
        assert_eq!((g.timeout, g.max_response), (Duration::from_secs(2), 8 << 10));
        for (text, says) in [
            ("[http]\nallow = [\"api.example.com\"]\n", "not an origin"),
            ("[http]\nallow = \"https://x\"\n", "a list of origins"),
            ("[http]\ntimeout = \"1h\"\n", "at most 5m"),
            ("[http]\nallowed = []\n", "did you mean \"allow\""),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }

    #[test]
    fn nothing_else_is_granted_and_limits_stay_under_the_hosts() {
        for (text, says) in [
            ("[network]\nhosts = []\n", "nothing else can be granted"),
            ("[config]\nkey = { env = \"HOME\" }\n", "BATON_VAR_*"),
            ("[config]\nkey = { env = \"BATON_VAR_MISSING\" }\n", "is not set"),
            ("[config]\nkey = 5\n", "quote it"),
            ("[config]\n\"my-key\" = \"v\"\n", "letters, digits and '_'"),
            ("[limits]\nmemory_mb = 65\n", "from 1 to 64"),
            ("[limits]\ncpu = \"301s\"\n", "at most 5m"),
            ("[limits]\nmemroy_mb = 1\n", "did you mean \"memory_mb\""),
            ("[config\n", "line 1: unclosed table"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }
}
