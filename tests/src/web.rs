//! A browser for the tests of the web UI: Chromium (`/usr/bin/chromium`, which `.ci/run`
//! installs) driven by `playwright-core`, installed with npm under the target directory on
//! first use (`<target>/web-tools`), so a fresh machine needs only Node 18 or later, npm and
//! the npm registry; and a run of a Node script with a time limit.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The browser the UI tests drive.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// The Chromium to drive; panics, saying how to get it, when it is missing (never a silent
/// skip: a UI that is not tested looks like one that passed).
pub fn chromium() -> PathBuf {
    let path = PathBuf::from(CHROMIUM);
    assert!(
        path.exists(),
        "{CHROMIUM} is missing: the web UI tests drive Debian's chromium, which .ci/run installs (apt-get install -y --no-install-recommends chromium)"
    );
    path
}

/// The target directory: `target/<profile>/deps/<test>` -> `target`.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors().nth(3).expect("test executable in target/<profile>/deps").to_owned()
}

/// Where the screenshots of the UI tests go: `<target>/web-screens`, made when missing.
pub fn screens_dir() -> PathBuf {
    let dir = target_dir().join("web-screens");
    std::fs::create_dir_all(&dir).expect("make the screenshots directory");
    dir
}

/// `<target>/web-tools`, with `playwright-core` installed in it: once per machine (it stays
/// there across runs), once per process however many tests ask. Another process installing
/// at the same time loses the rename and uses the winner's.
pub fn tools() -> PathBuf {
    static TOOLS: OnceLock<PathBuf> = OnceLock::new();
    static MAKING: Mutex<()> = Mutex::new(());
    if let Some(p) = TOOLS.get() {
        return p.clone();
    }
    let _guard = MAKING.lock().unwrap_or_else(|e| e.into_inner());
    TOOLS.get_or_init(install).clone()
}

fn has_playwright(dir: &Path) -> bool {
    dir.join("node_modules/playwright-core/package.json").exists()
}

fn install() -> PathBuf {
    let dir = target_dir().join("web-tools");
    if has_playwright(&dir) {
        return dir;
    }
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "the web UI tests need Node.js 18 or later (`node`) and npm: {node:?}"
    );
    let tmp = dir.with_file_name(format!("web-tools.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).expect("make the web tools directory");
    let out = Command::new("npm")
        .args(["install", "--prefix"])
        .arg(&tmp)
        .args(["--no-audit", "--no-fund", "--loglevel=error", "playwright-core@1"])
        .output()
        .unwrap_or_else(|e| panic!("npm install playwright-core: cannot run npm: {e}"));
    assert!(
        out.status.success(),
        "npm install --prefix {} playwright-core@1 failed ({}; the web UI tests need the npm registry, once):\n{}\n{}",
        tmp.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if std::fs::rename(&tmp, &dir).is_err() {
        // Someone else installed it meanwhile.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    assert!(has_playwright(&dir), "no playwright-core in {} after npm install", dir.display());
    dir
}

/// What a script run gave.
#[derive(Debug)]
pub struct Script {
    /// The exit code; `None` when it was killed (at the time limit, or by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl std::fmt::Display for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?} after {:.1?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.took, self.stdout, self.stderr
        )
    }
}

/// Run `node <script>` with `env`, the tools' path in `BATON_WEB_TOOLS`, killed at `limit`.
/// Blocking: call it from `spawn_blocking` in an async test (the host runs meanwhile).
pub fn run_node(script: &Path, env: &[(&str, String)], limit: Duration) -> Script {
    let mut cmd = Command::new("node");
    cmd.arg(script)
        .current_dir(crate::root())
        .env("BATON_WEB_TOOLS", tools())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run node {}: {e}", script.display()));
    let pipe = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = r.read_to_string(&mut text);
            text
        })
    };
    let stdout = pipe(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = pipe(Box::new(child.stderr.take().expect("piped stderr")));
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Script {
        code: status.and_then(|s| s.code()),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        took: start.elapsed(),
    }
}
