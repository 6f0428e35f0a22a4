//! Python for the tests of workers outside the sandbox (`guest-sdk/python`) and of trace
//! export (`tests/observe/otlp_receiver.py`): a virtual environment with redis-py and
//! opentelemetry-proto under the target directory, made on first use (`python3 -m venv`,
//! `pip install`), so a fresh machine needs only CPython 3.9 or later and PyPI; and a
//! worker process of the library, `python -m baton_worker.bus`, to start, kill or stop.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The library's directory (what `PYTHONPATH` points at).
pub fn sdk_dir() -> PathBuf {
    crate::root().join("guest-sdk/python")
}

/// `<target>/py-venv`: beside the profile directories of the test executable.
fn venv_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> -> target
    let target = exe.ancestors().nth(3).expect("test executable in target/<profile>/deps");
    target.join("py-venv")
}

/// The venv's interpreter, the venv made first when missing (once per process; another
/// process making it at the same time loses the rename and uses the winner's).
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    static MAKING: Mutex<()> = Mutex::new(());
    if let Some(p) = PYTHON.get() {
        return p.clone();
    }
    let _guard = MAKING.lock().unwrap_or_else(|e| e.into_inner());
    PYTHON.get_or_init(make_venv).clone()
}

fn make_venv() -> PathBuf {
    make(
        &venv_dir(),
        &["redis>=4.2", "opentelemetry-proto>=1.20"],
        "import redis, opentelemetry.proto.collector.trace.v1.trace_service_pb2",
        "the outside-worker and trace tests",
    )
}

/// The interpreter of a venv at `dir` whose `probe` (Python code) runs, made first when it
/// does not: `python3 -m venv` (or `$BATON_TEST_PYTHON`) beside it, `pip install packages`,
/// then renamed into place (another process making it at the same time loses the rename and
/// uses the winner's). `needed_by` says which tests need PyPI, in the panic when pip fails.
fn make(dir: &Path, packages: &[&str], probe: &str, needed_by: &str) -> PathBuf {
    let bin = dir.join("bin/python");
    let works = |python: &Path| {
        Command::new(python).args(["-c", probe]).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    };
    if works(&bin) {
        return bin;
    }
    let base = std::env::var("BATON_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("venv");
    let tmp = dir.with_file_name(format!("{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let run = |cmd: &mut Command, what: &str| {
        let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot run it: {e}"));
        assert!(
            out.status.success(),
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        Command::new(&base).args(["-m", "venv"]).arg(&tmp),
        &format!("{base} -m venv {} (set BATON_TEST_PYTHON to a CPython 3.9+ with venv)", tmp.display()),
    );
    run(
        Command::new(tmp.join("bin/python"))
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(packages),
        &format!("pip install {} ({needed_by} need PyPI, once)", packages.join(" ")),
    );
    if std::fs::rename(&tmp, dir).is_err() {
        // Someone else made it meanwhile.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    assert!(works(&bin), "{} cannot run {probe:?} after its venv was made", bin.display());
    bin
}

/// `python` with the library on its path, in `dir`.
pub fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(python());
    cmd.current_dir(dir).env("PYTHONPATH", sdk_dir()).env("PYTHONUNBUFFERED", "1").env_remove("BATON_WORKER_LOG");
    cmd
}

/// A `python -m baton_worker.bus` process.
pub struct Worker {
    child: Child,
    /// Every line it wrote on stderr so far.
    log: std::sync::Arc<Mutex<Vec<String>>>,
}

impl Worker {
    /// Start a worker of `module` (a `.py` file) on `redis`/`prefix` with `args`, and wait
    /// until it serves.
    pub fn start(module: &Path, redis: &str, prefix: &str, args: &[&str], env: &[(&str, &str)]) -> Worker {
        let mut cmd = command(module.parent().expect("a module in a directory"));
        cmd.args(["-m", "baton_worker.bus", "--module"])
            .arg(module)
            .args(["--redis", redis, "--prefix", prefix])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start python -m baton_worker.bus");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = std::sync::Arc::new(Mutex::new(Vec::new()));
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[python worker] {line}");
                lines.lock().unwrap().push(line);
            }
        });
        let worker = Worker { child, log };
        worker.wait_for_log("serving ", Duration::from_secs(30));
        worker
    }

    /// Wait until a line of its log contains `text`; panics after `limit`.
    pub fn wait_for_log(&self, text: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self.log.lock().unwrap().iter().find(|l| l.contains(text)) {
                return line.clone();
            }
            assert!(Instant::now() < deadline, "the python worker did not log {text:?} within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its log so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(mut self, limit: Duration) -> ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the python worker did not stop within {limit:?} of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `<target>/py-wasm-venv`: a venv with componentize-py, beside [`venv_dir`]'s.
fn wasm_venv_dir() -> PathBuf {
    venv_dir().with_file_name("py-wasm-venv")
}

/// The componentize-py release the SDK's build command is tested with
/// (`baton_worker.build.COMPONENTIZE_PY`).
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.*";

/// The interpreter of a venv with componentize-py, made on first use like [`python`]'s
/// (`python3 -m venv`, `pip install componentize-py`): what `python -m baton_worker.build`
/// runs with in the tests.
pub fn componentize_python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    static MAKING: Mutex<()> = Mutex::new(());
    if let Some(p) = PYTHON.get() {
        return p.clone();
    }
    let _guard = MAKING.lock().unwrap_or_else(|e| e.into_inner());
    PYTHON.get_or_init(make_wasm_venv).clone()
}

fn make_wasm_venv() -> PathBuf {
    make(&wasm_venv_dir(), &[COMPONENTIZE_PY], "import componentize_py", "the Python component tests")
}

/// Build the WebAssembly component of `module` (a `.py` file) into `out` with the SDK's
/// `python -m baton_worker.build`, with `paths` on its import path; panics with the
/// tool's output when it fails.
pub fn build_component(module: &Path, paths: &[&Path], out: &Path) {
    let mut cmd = Command::new(componentize_python());
    cmd.current_dir(crate::root())
        .env("PYTHONPATH", sdk_dir())
        .env_remove("VIRTUAL_ENV")
        .args(["-m", "baton_worker.build", "--quiet"])
        .arg(module)
        .arg("-o")
        .arg(out);
    for p in paths {
        cmd.arg("-p").arg(p);
    }
    let ran = cmd.output().expect("run python -m baton_worker.build");
    assert!(
        ran.status.success(),
        "python -m baton_worker.build {} failed ({}):\n{}\n{}",
        module.display(),
        ran.status,
        String::from_utf8_lossy(&ran.stdout),
        String::from_utf8_lossy(&ran.stderr)
    );
}

/// The component of `tests/polyglot/probe.py` (which imports the greeter example), built
/// with `python -m baton_worker.build`, as the Python tests and the `polyglot` bench load it.
/// componentize-py's output differs from build to build (and so would its compiled cache
/// entry), so a build is kept under `target/<profile>/polyglot-build/`, named by a hash of
/// everything that goes into it: the two modules, the SDK's Python files, the contract and
/// the componentize-py release. A change to any of them builds again.
pub fn probe_component() -> PathBuf {
    use sha2::Digest as _;
    let sdk = sdk_dir().join("baton_worker");
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&sdk)
        .expect("read the SDK")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "py"))
        .collect();
    inputs.sort();
    inputs.extend([
        crate::root().join("tests/polyglot/probe.py"),
        crate::root().join("plugins/python/greeter/greeter.py"),
        crate::root().join("wit/saga.wit"),
    ]);
    let mut hash = sha2::Sha256::new();
    hash.update(COMPONENTIZE_PY);
    for p in &inputs {
        hash.update(p.strip_prefix(crate::root()).unwrap_or(p).to_string_lossy().as_bytes());
        hash.update(std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())));
    }
    let key: String = hash.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
    let dir = profile_dir().join("polyglot-build");
    let out = dir.join(format!("pyprobe-{key}.wasm"));
    if out.is_file() {
        return out;
    }
    std::fs::create_dir_all(&dir).expect("create the build directory");
    let tmp = dir.join(format!("pyprobe-{key}.wasm.tmp-{}", std::process::id()));
    let started = Instant::now();
    build_component(
        &crate::root().join("tests/polyglot/probe.py"),
        &[&crate::root().join("plugins/python/greeter")],
        &tmp,
    );
    let size = std::fs::metadata(&tmp).expect("the built component").len();
    eprintln!("built pyprobe.wasm ({:.1} MB) in {:.1?}", size as f64 / 1e6, started.elapsed());
    std::fs::rename(&tmp, &out).expect("keep the built component");
    out
}

/// `target/<profile>`, from the test executable (`target/<profile>/deps/<test>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors().nth(2).expect("target/<profile>").to_owned()
}
