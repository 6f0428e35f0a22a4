//! `baton new`: a worker crate or a workflow (with its test cases) to start from, written
//! where the newcomer will look, never over an existing file.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// The files of a new Rust worker named `name` in `dir/name`, which depends on the guest SDK
/// at `sdk` (a path, written relative to the crate), or on the repository when `None`.
pub fn worker(dir: &Path, name: &str, sdk: Option<&Path>) -> anyhow::Result<Vec<PathBuf>> {
    check_name(name)?;
    let root = dir.join(name);
    if root.exists() {
        bail!("{} exists already: pick another name, or remove it", root.display());
    }
    let dependency = match sdk {
        Some(sdk) => {
            let sdk = std::path::absolute(sdk)?;
            let crate_dir = std::path::absolute(&root)?;
            format!("{{ path = {:?} }}", relative(&crate_dir, &sdk).display().to_string())
        }
        None => "{ git = \"https://github.com/baton-saga/baton\" }".to_owned(),
    };
    let prefix = name.replace('-', "_");
    let cargo = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

# A Baton worker: a WebAssembly component the host loads from its plugins directory.
# Build it with `cargo build --release --target wasm32-wasip2`; the file is
# target/wasm32-wasip2/release/{file}.wasm.
[lib]
crate-type = ["cdylib"]

# A workspace of its own, so that it builds wherever it is put.
[workspace]

[dependencies]
baton-guest = {dependency}
serde = {{ version = "1", features = ["derive"] }}
schemars = {{ version = "1", default-features = false, features = ["derive", "std"] }}

[profile.release]
# Small, fast components; a panic aborts the instance and the host reports its message.
opt-level = "s"
lto = true
strip = "debuginfo"
"#,
        file = prefix,
    );
    let lib = format!(
        r#"//! The {name} worker: its commands, each a function from a typed request to a typed
//! answer. The host checks payloads and answers against the JSON Schemas derived from the
//! types (`typed` below), before and after the handler runs.

use baton_guest::{{Context, Failure}};
use schemars::JsonSchema;
use serde::{{Deserialize, Serialize}};

#[derive(Deserialize, JsonSchema)]
struct Hello {{
    /// Whom to greet.
    #[schemars(length(min = 1))]
    name: String,
}}

#[derive(Serialize, JsonSchema)]
struct Greeting {{
    text: String,
}}

/// `{prefix}.hello`: a greeting. A failure is `Failure::permanent` (never retried) or
/// `Failure::retryable` (tried again by the step's `retry` policy).
fn hello(req: Hello, ctx: &Context) -> Result<Greeting, Failure> {{
    if req.name.trim().is_empty() {{
        return Err(Failure::permanent("no_name", "whom should I greet?"));
    }}
    Ok(Greeting {{ text: format!("Hello, {{}} (attempt {{}})", req.name, ctx.attempt) }})
}}

baton_guest::worker! {{
    typed "{prefix}.hello" => hello,
}}
"#
    );
    write_all(&[(root.join("Cargo.toml"), cargo), (root.join("src/lib.rs"), lib)])
}

/// A workflow named `name` in `dir` whose one step sends `command`, and its test cases in
/// `dir/tests`.
pub fn workflow(dir: &Path, name: &str, command: &str) -> anyhow::Result<Vec<PathBuf>> {
    check_name(name)?;
    let file = dir.join(format!("{name}.toml"));
    let cases = dir.join("tests").join(format!("{name}.test.toml"));
    for f in [&file, &cases] {
        if f.exists() {
            bail!("{} exists already: pick another name, or remove it", f.display());
        }
    }
    let wf = format!(
        r#"# The {name} workflow: its steps run in order; a step that fails for good undoes the ones
# before it (their `compensate` commands), latest first. See the README, "Workflows".
name = "{name}"
description = "Greet someone"
input_schema = {{ type = "object", required = ["who"] }}
output = "{{ 'text': steps.hello.text }}"

[defaults]
timeout = "5s"
retry = {{ attempts = 3, backoff = "200ms" }}

[[step]]
name = "hello"
command = "{command}"
input = "{{ 'name': input.who }}"
"#
    );
    let test = format!(
        r#"# Cases of {name}.toml: `baton test {name}` runs them with time skipped, the answers below
# standing in for the plugins. See the README, "Testing workflows".
workflow = "{name}"

[[case]]
name = "greets"
input = {{ who = "Ada" }}
[case.results]
"{command}" = {{ ok = {{ text = "Hello, Ada" }} }}
[case.expect]
status = "completed"
output = {{ text = "Hello, Ada" }}

[[case]]
name = "a busy worker is tried again, then the saga completes"
input = {{ who = "Ada" }}
[case.results]
"{command}" = [{{ err = {{ code = "busy", message = "later", retryable = true }} }}, {{ ok = {{ text = "Hello, Ada" }} }}]
[case.expect]
status = "completed"
commands = ["{command}", "{command}"]
"#
    );
    write_all(&[(file, wf), (cases, test)])
}

/// A name for a crate, a workflow and a command prefix: lowercase letters, digits, `_` and
/// `-`, starting with a letter.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && name.len() <= 64;
    if !ok {
        bail!(
            "{name:?} is not a name Baton can use: lowercase letters, digits, _ and -, starting with a letter (e.g. greeter)"
        );
    }
    Ok(())
}

fn write_all(files: &[(PathBuf, String)]) -> anyhow::Result<Vec<PathBuf>> {
    for (path, text) in files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(files.iter().map(|(p, _)| p.clone()).collect())
}

/// `to` written relative to `from` (both absolute).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let (f, t): (Vec<_>, Vec<_>) = (from.components().collect(), to.components().collect());
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    out
}

/// The guest SDK of the repository `start` is in (or under), if any: where `baton new
/// worker` points the new crate by default.
pub fn find_sdk(start: &Path) -> Option<PathBuf> {
    let start = std::path::absolute(start).ok()?;
    start.ancestors().map(|d| d.join("guest-sdk")).find(|d| d.join("Cargo.toml").is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_then_descend() {
        assert_eq!(
            relative(Path::new("/r/plugins/greeter"), Path::new("/r/guest-sdk")),
            PathBuf::from("../../guest-sdk")
        );
        assert_eq!(relative(Path::new("/a"), Path::new("/a/b")), PathBuf::from("b"));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("greeter").is_ok() && check_name("fraud-check2").is_ok());
        for bad in ["", "Greeter", "1st", "a b", "a/b", "a.b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
