//! JavaScript for the tests of JavaScript workers (`guest-sdk/js`): componentize-js installed
//! under the target directory on first use (`npm install`), so a fresh machine needs only
//! Node 20.6 or later, npm and the npm registry; and components built with the SDK's
//! `build.js`, kept under the target directory by a hash of their inputs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// The SDK's directory (`guest-sdk/js`, the npm package `baton-worker`).
pub fn sdk_dir() -> PathBuf {
    crate::root().join("guest-sdk/js")
}

/// The componentize-js release the tests install, as npm names it (the SDK's build says
/// `npm install @bytecodealliance/componentize-js@0.23`).
pub const COMPONENTIZE_JS: &str = "@bytecodealliance/componentize-js@0.23.0";

/// The version part of [`COMPONENTIZE_JS`], as its `package.json` says it.
const COMPONENTIZE_JS_VERSION: &str = "0.23.0";

/// `target/<profile>`, from the test executable (`target/<profile>/deps/<test>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors().nth(2).expect("test executable in target/<profile>/deps").to_owned()
}

/// `<target>/js-tools`: an npm project holding componentize-js, beside the profile
/// directories (and the Python venvs).
fn tools_dir() -> PathBuf {
    profile_dir().parent().expect("target/<profile> has a parent").join("js-tools")
}

/// The directory whose `node_modules` holds componentize-js (what `build.js
/// --componentize-js` and `BATON_COMPONENTIZE_JS` take), installed first when missing or of
/// another version: once per process; another process installing it at the same time loses
/// the rename and uses the winner's.
pub fn componentize_js() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    static MAKING: Mutex<()> = Mutex::new(());
    if let Some(d) = DIR.get() {
        return d.clone();
    }
    let _guard = MAKING.lock().unwrap_or_else(|e| e.into_inner());
    DIR.get_or_init(install).clone()
}

/// Whether `dir` holds componentize-js at [`COMPONENTIZE_JS_VERSION`].
fn installed(dir: &Path) -> bool {
    let manifest = dir.join("node_modules/@bytecodealliance/componentize-js/package.json");
    let Ok(text) = std::fs::read_to_string(manifest) else { return false };
    serde_json::from_str::<serde_json::Value>(&text).is_ok_and(|p| p["version"] == COMPONENTIZE_JS_VERSION)
}

/// Install [`COMPONENTIZE_JS`] into [`tools_dir`] unless it is there: `npm install` in a
/// directory of this process's own, then renamed into place. A stale install (another
/// version) is moved aside and removed first.
fn install() -> PathBuf {
    let dir = tools_dir();
    if installed(&dir) {
        return dir;
    }
    let pid = std::process::id();
    let stale = dir.with_file_name(format!("js-tools.stale-{pid}"));
    if dir.exists() && std::fs::rename(&dir, &stale).is_ok() {
        let _ = std::fs::remove_dir_all(&stale);
    }
    let tmp = dir.with_file_name(format!("js-tools.tmp-{pid}"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).expect("create the js-tools directory");
    std::fs::write(
        tmp.join("package.json"),
        r#"{ "name": "baton-test-js-tools", "private": true, "description": "componentize-js for the tests of guest-sdk/js" }"#,
    )
    .expect("write the js-tools package.json");
    let started = Instant::now();
    let out = Command::new("npm")
        .current_dir(&tmp)
        .args(["install", "--no-audit", "--no-fund", "--loglevel=error", COMPONENTIZE_JS])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("npm install {COMPONENTIZE_JS}: cannot run npm ({e}): the JavaScript worker tests need Node 20.6+ and npm on PATH"));
    assert!(
        out.status.success(),
        "npm install {COMPONENTIZE_JS} failed ({}; the JavaScript worker tests need the npm registry, once):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("installed {COMPONENTIZE_JS} in {:.1?}", started.elapsed());
    if std::fs::rename(&tmp, &dir).is_err() {
        // Someone else installed it meanwhile.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    assert!(installed(&dir), "{} has no componentize-js {COMPONENTIZE_JS_VERSION} after npm install", dir.display());
    dir
}

/// `node` in the repository root.
pub fn node() -> Command {
    let mut cmd = Command::new("node");
    cmd.current_dir(crate::root()).stdin(Stdio::null());
    cmd
}

/// Build the WebAssembly component of `module` (a `.js` file) into `out` with the SDK's
/// `node guest-sdk/js/build.js`; panics with the tool's output when it fails.
pub fn build_component(module: &Path, out: &Path) {
    let ran = node()
        .arg(sdk_dir().join("build.js"))
        .arg("--quiet")
        .arg(module)
        .arg("-o")
        .arg(out)
        .arg("--componentize-js")
        .arg(componentize_js())
        .output()
        .expect("run node guest-sdk/js/build.js (the JavaScript worker tests need Node 20.6+ on PATH)");
    assert!(
        ran.status.success(),
        "node guest-sdk/js/build.js {} failed ({}):\n{}\n{}",
        module.display(),
        ran.status,
        String::from_utf8_lossy(&ran.stdout),
        String::from_utf8_lossy(&ran.stderr)
    );
}

/// The component of `module` named `name`, built with [`build_component`] unless a build of
/// the same inputs is kept: componentize-js's output differs from build to build (and so
/// would its compiled cache entry), so a build is kept under `target/<profile>/polyglot-build/`,
/// named by a hash of everything that goes into it: `module`, the `modules` it imports, the
/// SDK's files, the contract and the componentize-js release. A change to any of them builds
/// again.
pub fn component(name: &str, module: &Path, modules: &[&Path]) -> PathBuf {
    use sha2::Digest as _;
    let root = crate::root();
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(sdk_dir())
        .expect("read the SDK")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "js" || x == "json"))
        .collect();
    inputs.sort();
    inputs.push(module.to_owned());
    inputs.extend(modules.iter().map(|m| m.to_path_buf()));
    inputs.push(root.join("wit/saga.wit"));
    let mut hash = sha2::Sha256::new();
    hash.update(COMPONENTIZE_JS);
    for p in &inputs {
        hash.update(p.strip_prefix(&root).unwrap_or(p).to_string_lossy().as_bytes());
        hash.update(std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())));
    }
    let key: String = hash.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
    let dir = profile_dir().join("polyglot-build");
    let out = dir.join(format!("{name}-{key}.wasm"));
    if out.is_file() {
        return out;
    }
    std::fs::create_dir_all(&dir).expect("create the build directory");
    let tmp = dir.join(format!("{name}-{key}.wasm.tmp-{}", std::process::id()));
    let started = Instant::now();
    build_component(module, &tmp);
    let size = std::fs::metadata(&tmp).expect("the built component").len();
    eprintln!("built {name}.wasm ({:.1} MB) in {:.1?}", size as f64 / 1e6, started.elapsed());
    std::fs::rename(&tmp, &out).expect("keep the built component");
    out
}

/// The component of `tests/polyglot/probe.js` (which imports the fraud example), as the
/// JavaScript tests and the `polyglot` bench load it.
pub fn probe_component() -> PathBuf {
    let root = crate::root();
    component("jsprobe", &root.join("tests/polyglot/probe.js"), &[&root.join("plugins/js/fraud/fraud.js")])
}
