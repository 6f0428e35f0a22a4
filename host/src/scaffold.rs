//! `baton new`: a worker (in Rust, Python or JavaScript) or a workflow (with its test cases)
//! to start from, written where the newcomer will look, never over an existing file.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// The language of a new worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A crate of the Rust SDK (`guest-sdk/rust`), built with cargo.
    Rust,
    /// A module of the Python SDK (`guest-sdk/python`), built with componentize-py.
    Python,
    /// A module of the JavaScript SDK (`guest-sdk/js`), built with componentize-js.
    Js,
}

impl Lang {
    /// Where its SDK sits in the repository.
    fn sdk_dir(self) -> &'static str {
        match self {
            Lang::Rust => "guest-sdk/rust",
            Lang::Python => "guest-sdk/python",
            Lang::Js => "guest-sdk/js",
        }
    }

    /// The file that tells its SDK's directory.
    fn sdk_marker(self) -> &'static str {
        match self {
            Lang::Rust => "Cargo.toml",
            Lang::Python => "baton_worker/__init__.py",
            Lang::Js => "package.json",
        }
    }
}

/// A new worker named `name` in `dir/name`, in `lang`, on the SDK at `sdk` (its directory;
/// when `None`, the one of the repository `dir` is in, else the published one): the files
/// written, and what to do next.
pub fn worker(dir: &Path, name: &str, lang: Lang, sdk: Option<&Path>) -> anyhow::Result<(Vec<PathBuf>, String)> {
    check_name(name)?;
    let root = dir.join(name);
    if root.exists() {
        bail!("{} exists already: pick another name, or remove it", root.display());
    }
    let sdk = match sdk {
        Some(sdk) => {
            if !sdk.join(lang.sdk_marker()).is_file() {
                bail!(
                    "--sdk {}: not the {lang:?} SDK (it has no {}); give the {} directory of a Baton checkout",
                    sdk.display(),
                    lang.sdk_marker(),
                    lang.sdk_dir()
                );
            }
            Some(sdk.to_owned())
        }
        None => find_sdk(dir, lang),
    };
    match lang {
        Lang::Rust => rust_worker(&root, name, sdk.as_deref()),
        Lang::Python => python_worker(&root, name, sdk.as_deref()),
        Lang::Js => js_worker(&root, name, sdk.as_deref()),
    }
}

/// A Rust crate at `root`, which depends on the SDK at `sdk` (written relative to the crate),
/// or on the repository when `None`.
fn rust_worker(root: &Path, name: &str, sdk: Option<&Path>) -> anyhow::Result<(Vec<PathBuf>, String)> {
    let dependency = match sdk {
        Some(sdk) => {
            let sdk = std::path::absolute(sdk)?;
            let crate_dir = std::path::absolute(root)?;
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
# target/wasm32-wasip2/release/{file}.wasm. Test it with `cargo test`: the tests run on the
# native target, baton_guest::testing standing in for the host.
[lib]
crate-type = ["cdylib"]

# A workspace of its own, so that it builds wherever it is put.
[workspace]

[dependencies]
baton-guest = {dependency}
serde = {{ version = "1", features = ["derive"] }}
schemars = {{ version = "1", default-features = false, features = ["derive", "std"] }}

[dev-dependencies]
serde_json = "1"

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

/// `cargo test`: the commands called as the host calls them, JSON in and out.
#[cfg(test)]
mod tests {{
    use baton_guest::Context;
    use baton_guest::testing::{{Worker, context}};
    use serde_json::json;

    #[test]
    fn hello_greets_by_name() {{
        let worker = Worker::new(super::baton_commands);
        let greeting = worker.call("{prefix}.hello", &json!({{ "name": "Ada" }})).unwrap();
        assert_eq!(greeting, json!({{ "text": "Hello, Ada (attempt 1)" }}));
        // Another attempt of the same step.
        let retry = Context {{ attempt: 2, ..context("{prefix}.hello") }};
        let greeting = worker.call_with(&retry, &json!({{ "name": "Ada" }})).unwrap();
        assert_eq!(greeting["text"], "Hello, Ada (attempt 2)");
    }}

    #[test]
    fn no_name_fails_for_good() {{
        let failure = Worker::new(super::baton_commands).call("{prefix}.hello", &json!({{ "name": " " }})).unwrap_err();
        assert_eq!((failure.code.as_str(), failure.retryable), ("no_name", false));
    }}
}}
"#
    );
    let files = write_all(&[(root.join("Cargo.toml"), cargo), (root.join("src/lib.rs"), lib)])?;
    let next = format!(
        "next: cd {dir}\n      cargo test                                    (its tests, on the native target: no host needed)\n      cargo build --release --target wasm32-wasip2  (the component)\n      baton test-plugin target/wasm32-wasip2/release/{prefix}.wasm --command {prefix}.hello --input '{{\"name\": \"Ada\"}}'\n      then copy the .wasm into the host's plugins directory, and `baton new workflow {name}`",
        dir = root.display()
    );
    Ok((files, next))
}

/// The SDK at `sdk` as a path from `root`, for the next steps and a `file:` dependency.
fn shown(sdk: Option<&Path>, root: &Path) -> Option<String> {
    let sdk = std::path::absolute(sdk?).ok()?;
    let from = std::path::absolute(root).ok()?;
    Some(relative(&from, &sdk).display().to_string())
}

/// A Python module at `root/NAME.py` with its test, on the Python SDK at `sdk`.
fn python_worker(root: &Path, name: &str, sdk: Option<&Path>) -> anyhow::Result<(Vec<PathBuf>, String)> {
    let module = name.replace('-', "_");
    let code = format!(
        r#""""The {name} worker: its commands, each a function from a JSON request (a dict) to a
JSON answer.

Test it, no host needed:  python -m unittest           (in this directory)
Build the component:      python -m baton_worker.build {module}.py -o {module}.wasm
(with componentize-py installed: pip install 'componentize-py==0.25.*')
"""

from baton_worker import Context, Failure, command


@command(
    "{module}.hello",
    input_schema={{"type": "object", "required": ["name"], "properties": {{"name": {{"type": "string", "minLength": 1}}}}}},
    output_schema={{"type": "object", "required": ["text"], "properties": {{"text": {{"type": "string"}}}}}},
)
def hello(req: dict, ctx: Context) -> dict:
    """A greeting. ``Failure.fatal`` is never retried, ``Failure.retryable`` is tried again by
    the step's ``retry`` policy, and any other exception is the failure ``internal``, with its
    traceback."""
    name = str(req.get("name", "")).strip()
    if not name:
        raise Failure.fatal("no_name", "whom should I greet?")
    return {{"text": f"Hello, {{name}} (attempt {{ctx.attempt}})"}}
"#
    );
    let test = format!(
        r#""""Tests of {module}.py without a host (``baton_worker.testing`` calls the commands as
the host does, JSON in and out): ``python -m unittest`` in this directory."""

import unittest

from baton_worker.testing import call

import {module}  # noqa: F401 (registers its commands)


class HelloTest(unittest.TestCase):
    def test_greets_by_name(self):
        self.assertEqual(call("{module}.hello", {{"name": "Ada"}}), {{"ok": {{"text": "Hello, Ada (attempt 1)"}}}})
        # Another attempt of the same step.
        self.assertEqual(call("{module}.hello", {{"name": "Ada"}}, attempt=2)["ok"]["text"], "Hello, Ada (attempt 2)")

    def test_no_name_fails_for_good(self):
        err = call("{module}.hello", {{"name": " "}})["err"]
        self.assertEqual((err["code"], err["retryable"]), ("no_name", False))


if __name__ == "__main__":
    unittest.main()
"#
    );
    let files =
        write_all(&[(root.join(format!("{module}.py")), code), (root.join(format!("test_{module}.py")), test)])?;
    let path = match shown(sdk, root) {
        Some(sdk) => format!("export PYTHONPATH={sdk}                     (the SDK)"),
        None => {
            "pip install 'git+https://github.com/baton-saga/baton#subdirectory=guest-sdk/python'   (the SDK)".to_owned()
        }
    };
    let next = format!(
        "next: cd {dir}\n      {path}\n      python -m unittest                            (its tests: no host needed)\n      pip install 'componentize-py==0.25.*'         (once: the component builder)\n      python -m baton_worker.build {module}.py -o {module}.wasm\n      baton test-plugin {module}.wasm --command {module}.hello --input '{{\"name\": \"Ada\"}}'\n      then copy the .wasm into the host's plugins directory, and `baton new workflow {name}`",
        dir = root.display()
    );
    Ok((files, next))
}

/// An npm package at `root` (`NAME.js`, its test, `package.json`) on the JavaScript SDK at
/// `sdk` (a `file:` dependency), or on the published package when `None`.
fn js_worker(root: &Path, name: &str, sdk: Option<&Path>) -> anyhow::Result<(Vec<PathBuf>, String)> {
    let module = name.replace('-', "_");
    let dependency = match shown(sdk, root) {
        Some(sdk) => format!("file:{sdk}"),
        None => "github:baton-saga/baton#path:guest-sdk/js".to_owned(),
    };
    let package = format!(
        r#"{{
  "name": "{name}",
  "private": true,
  "type": "module",
  "description": "A Baton worker: npm test runs its tests without a host, npm run build makes {module}.wasm",
  "scripts": {{
    "test": "node --test",
    "build": "baton-worker-build {module}.js -o {module}.wasm --componentize-js ."
  }},
  "dependencies": {{
    "baton-worker": "{dependency}"
  }},
  "devDependencies": {{
    "@bytecodealliance/componentize-js": "0.23"
  }}
}}
"#
    );
    let code = format!(
        r#"// The {name} worker: its commands, each a function from a JSON request to a JSON answer.
//
// Test it, no host needed:  npm test
// Build the component:      npm run build     (writes {module}.wasm)

import {{ Failure, command }} from "baton-worker";

// A greeting. `Failure.fatal` is never retried, `Failure.retryable` is tried again by the
// step's `retry` policy, and anything else thrown is the failure `internal`, with its stack.
command(
  "{module}.hello",
  (req, ctx) => {{
    const name = String(req.name ?? "").trim();
    if (!name) throw Failure.fatal("no_name", "whom should I greet?");
    return {{ text: `Hello, ${{name}} (attempt ${{ctx.attempt}})` }};
  }},
  {{
    inputSchema: {{ type: "object", required: ["name"], properties: {{ name: {{ type: "string", minLength: 1 }} }} }},
    outputSchema: {{ type: "object", required: ["text"], properties: {{ text: {{ type: "string" }} }} }},
  }},
);
"#
    );
    let test = format!(
        r#"// Tests of {module}.js without a host (`baton-worker/testing` calls the commands as the
// host does, JSON in and out): `npm test`.

import assert from "node:assert/strict";
import {{ test }} from "node:test";
import {{ call }} from "baton-worker/testing";
import "./{module}.js";

test("hello greets by name", () => {{
  assert.deepEqual(call("{module}.hello", {{ name: "Ada" }}), {{ ok: {{ text: "Hello, Ada (attempt 1)" }} }});
  // Another attempt of the same step.
  assert.equal(call("{module}.hello", {{ name: "Ada" }}, {{ attempt: 2 }}).ok.text, "Hello, Ada (attempt 2)");
}});

test("no name fails for good", () => {{
  const {{ err }} = call("{module}.hello", {{ name: " " }});
  assert.deepEqual([err.code, err.retryable], ["no_name", false]);
}});
"#
    );
    let files = write_all(&[
        (root.join("package.json"), package),
        (root.join(format!("{module}.js")), code),
        (root.join(format!("{module}.test.js")), test),
    ])?;
    let next = format!(
        "next: cd {dir}\n      npm install                                   (the SDK and componentize-js)\n      npm test                                      (its tests: no host needed)\n      npm run build                                 (the component, {module}.wasm)\n      baton test-plugin {module}.wasm --command {module}.hello --input '{{\"name\": \"Ada\"}}'\n      then copy the .wasm into the host's plugins directory, and `baton new workflow {name}`",
        dir = root.display()
    );
    Ok((files, next))
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

/// The `lang` SDK of the repository `start` is in (or under), if any: what `baton new
/// worker` points the new worker at by default.
fn find_sdk(start: &Path, lang: Lang) -> Option<PathBuf> {
    let start = std::path::absolute(start).ok()?;
    start.ancestors().map(|d| d.join(lang.sdk_dir())).find(|d| d.join(lang.sdk_marker()).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_then_descend() {
        assert_eq!(
            relative(Path::new("/r/plugins/greeter"), Path::new("/r/guest-sdk/rust")),
            PathBuf::from("../../guest-sdk/rust")
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
