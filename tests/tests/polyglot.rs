//! Python workers as WebAssembly components, through the real `baton` binary: the SDK's
//! `python -m baton_worker.build` builds `tests/polyglot/probe.py` (the greeter example's
//! commands and some that fail) once per test binary (kept across runs while its sources stay
//! the same), with componentize-py installed under the target directory on first use; it is
//! put in a plugin directory with the Rust plugins the workflows use, and the host lists it,
//! runs it, and maps its failures. The last test runs one saga of Python, JavaScript and Rust
//! workers through `baton serve`, embedded and on Redis.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use baton_tests::{PLUGINS_DIR, baton, probes, python, root, run, step};
use serde_json::{Value, json};

/// The plugin directory: the Python component `pyprobe.wasm`, with `testkit` and
/// `notification` (Rust). The first call builds the component, unless a build of the same
/// sources is kept from an earlier run ([`python::probe_component`]), then lists the plugins, which
/// compiles it into the shared cache: the tests after it load it compiled.
fn plugins() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = target().join("polyglot-plugins");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the plugin directory");
        for rust in ["testkit.wasm", "notification.wasm"] {
            std::fs::copy(Path::new(PLUGINS_DIR).join(rust), dir.join(rust)).expect("copy a Rust plugin");
        }
        std::fs::copy(python::probe_component(), dir.join("pyprobe.wasm")).expect("copy the Python component");
        let started = Instant::now();
        let listed = run(baton().env("BATON_PLUGINS", &dir).arg("plugins"));
        assert_eq!(listed.code, 0, "{listed}");
        eprintln!("first load of the plugins (a compile, or from the cache) in {:.1?}", started.elapsed());
        dir
    })
}

/// `target/<profile>`.
fn target() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent().and_then(Path::parent).expect("target/<profile>").to_owned()
}

#[test]
fn plugins_lists_the_python_component_with_its_commands() {
    let ran = run(baton().env("BATON_PLUGINS", plugins()).args(["plugins", "--json"]));
    assert_eq!(ran.code, 0, "{ran}");
    let listed = ran.json();
    let probe = listed
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "pyprobe"))
        .unwrap_or_else(|| panic!("no pyprobe plugin in {listed:#}"));
    assert_eq!(probe["contract"], "baton:saga@0.2.0");
    let names: Vec<&str> = probe["commands"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["greeter.hello", "probe.crash", "probe.decline", "probe.echo", "probe.exit", "probe.flaky"]);
    // The schemas given to @command come through `describe` as JSON text.
    let hello = &probe["commands"][0];
    let schema: Value = serde_json::from_str(hello["input_schema"].as_str().unwrap()).unwrap();
    assert_eq!(schema["required"], json!(["name"]));
    assert!(hello["output_schema"].as_str().unwrap().contains("greeting"), "{hello:#}");
    assert_eq!(probe["commands"][1]["input_schema"], Value::Null);
}

#[test]
fn the_greet_example_completes_with_the_python_handlers_output() {
    // The example's own workflow, beside its plugin: greet in Python, notify in Rust.
    let (code, saga) = probes::run_saga(
        plugins(),
        &root().join("plugins/python/greeter"),
        "greet",
        r#"{"name": "Ada", "lang": "fr"}"#,
    );
    assert_eq!(code, 0, "{saga:#}");
    assert_eq!(saga["status"], "completed");
    let welcome = step(&saga, "welcome");
    assert_eq!(welcome["output"]["greeting"], "Bonjour, Ada!", "{welcome:#}");
    assert_eq!(welcome["output"]["attempt"], 1);
    // The context carried the saga's id.
    assert_eq!(welcome["output"]["saga"], saga["id"]);
    assert_eq!(saga["output"], json!({"to": "Ada", "message": "Bonjour, Ada!"}));

    // A Failure.fatal of the example (the input schema lets an empty name through).
    let (code, saga) = probes::run_saga(plugins(), &root().join("plugins/python/greeter"), "greet", r#"{"name": " "}"#);
    assert_eq!(code, 2, "{saga:#}");
    let welcome = step(&saga, "welcome");
    assert_eq!(welcome["error"]["code"], "no_name", "{welcome:#}");
    assert_eq!(welcome["attempts"], 1, "a fatal failure is not retried: {welcome:#}");
}

#[test]
fn an_uncaught_exception_is_the_failure_internal_with_its_traceback_and_the_host_goes_on() {
    let dir = probes::workflow(
        "crash",
        r#"
name = "crash"
[defaults]
timeout = "10s"
retry = { attempts = 3, backoff = "10ms", max_backoff = "10ms" }

[[step]]
name = "first"
command = "testkit.echo"
compensate = "testkit.echo"

[[step]]
name = "crash"
command = "probe.crash"
input = "{ 'numerator': 7 }"
catch = [{ errors = ["internal"], next = "exit" }]

[[step]]
name = "skipped"
command = "probe.decline"
input = "{ 'code': 'skipped', 'message': 'the catch jumps over this step' }"

[[step]]
name = "exit"
command = "probe.exit"
catch = [{ errors = ["internal"], next = "after" }]

[[step]]
name = "after"
command = "greeter.hello"
input = "{ 'name': 'again' }"
"#,
    );
    let (code, saga) = probes::run_saga(plugins(), dir.path(), "crash", "{}");
    assert_eq!(code, 0, "{saga:#}");
    let crash = step(&saga, "crash");
    assert_eq!(crash["status"], "failed");
    assert_eq!(crash["attempts"], 1, "internal is permanent: {crash:#}");
    assert_eq!(crash["error"]["code"], "internal", "{crash:#}");
    let message = crash["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("ZeroDivisionError: division by zero (uncaught in the handler of probe.crash)"),
        "{message}"
    );
    // The traceback, down to the line that raised.
    for frame in ["Traceback (most recent call last)", "in crash", "in _ratio", "in _divide"] {
        assert!(message.contains(frame), "no {frame:?} in {message}");
    }
    // SystemExit, which the registry lets through, is caught by the component's glue.
    let exit = step(&saga, "exit");
    assert_eq!(exit["error"]["code"], "internal", "{exit:#}");
    let message = exit["error"]["message"].as_str().unwrap();
    assert!(message.contains("SystemExit") && message.contains("probe.exit"), "{message}");
    // Neither trapped the host: the same process ran the next Python command.
    assert!(saga["steps"].as_array().unwrap().iter().all(|s| s["name"] != "skipped"), "{saga:#}");
    assert_eq!(step(&saga, "after")["output"]["greeting"], "Hello, again!");
}

#[test]
fn fatal_fails_at_once_and_retryable_is_retried_up_to_the_policy() {
    probes::fatal_fails_at_once_and_retryable_is_retried_up_to_the_policy(plugins());
}

/// A workflow whose steps are a Python, a JavaScript and a Rust worker, and one whose Python
/// step raises: through `baton serve` (its API, its store and bus), embedded and on Redis.
#[tokio::test(flavor = "multi_thread")]
async fn one_saga_runs_workers_of_three_languages_through_baton_serve() {
    use baton_tests::server::Server;
    let dir = tempfile::tempdir().unwrap();
    let (plugins, workflows) = (dir.path().join("plugins"), dir.path().join("workflows"));
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::create_dir_all(&workflows).unwrap();
    std::fs::copy(python::probe_component(), plugins.join("pyprobe.wasm")).unwrap();
    let fraud = root().join("plugins/js/fraud/fraud.js");
    std::fs::copy(baton_tests::js::component("fraud", &fraud, &[]), plugins.join("fraud.wasm")).unwrap();
    for rust in ["notification.wasm", "inventory.wasm"] {
        std::fs::copy(Path::new(PLUGINS_DIR).join(rust), plugins.join(rust)).unwrap();
    }
    std::fs::write(
        workflows.join("polyglot.toml"),
        r#"
name = "polyglot"
output = "{ 'greeting': steps.hello.greeting, 'score': steps.screen.score, 'sent': steps.tell }"

[defaults]
timeout = "20s"
retry = { attempts = 2, backoff = "50ms", max_backoff = "50ms" }

[[step]]
name = "reserve"
command = "inventory.reserve"
compensate = "inventory.release"
input = "{ 'order_id': input.order_id, 'items': input.items }"

[[step]]
name = "hello"
command = "greeter.hello"
input = "{ 'name': input.customer }"

[[step]]
name = "screen"
command = "fraud.check"
input = "{ 'order_id': input.order_id, 'items': input.items, 'billing_country': input.billing, 'shipping_country': input.shipping }"

[[step]]
name = "tell"
command = "notification.send"
input = "{ 'customer': input.customer, 'message': steps.hello.greeting }"
"#,
    )
    .unwrap();
    std::fs::write(
        workflows.join("polyglot_crash.toml"),
        r#"
name = "polyglot_crash"

[[step]]
name = "reserve"
command = "inventory.reserve"
compensate = "inventory.release"
input = "{ 'order_id': input.order_id, 'items': input.items }"

[[step]]
name = "crash"
command = "probe.crash"
input = "{}"
"#,
    )
    .unwrap();
    // A large order billed in one country and shipped to another scores 1.
    let order = |id: &str, qty: u32, shipping: &str| {
        let items = json!([{ "sku": "A-1", "qty": qty, "price": 300.0 }]);
        json!({ "order_id": id, "customer": "Ada", "billing": "FR", "shipping": shipping, "items": items })
    };

    let redis = baton_tests::redis_url();
    let prefix = baton_tests::unique_prefix("polyglot_serve");
    let data = dir.path().join("data");
    let (plugins_arg, workflows_arg) = (plugins.to_str().unwrap(), workflows.to_str().unwrap());
    for host in [vec!["--data", data.to_str().unwrap()], vec!["--redis", redis.as_str(), "--prefix", prefix.as_str()]] {
        let args = [&["--plugins", plugins_arg, "--workflows", workflows_arg][..], &host[..]].concat();
        let server = Server::start(&args).await;
        let ids: Vec<String> =
            ["ok", "fraud", "crash"].iter().map(|k| format!("{k}-{}", host[0].trim_start_matches('-'))).collect();
        let starts = [
            ("polyglot", order("o-1", 1, "FR")),
            ("polyglot", order("o-2", 30, "NZ")),
            ("polyglot_crash", order("o-3", 1, "FR")),
        ];
        for (id, (workflow, input)) in ids.iter().zip(starts) {
            let (code, body) = server.start_saga(workflow, id, &input).await.expect("the API answers");
            assert!(code == 201 || code == 202, "{code} {body:#}");
        }
        let sagas = server.wait_all(&ids, Duration::from_secs(60)).await;
        let [ok, fraud, crash] = &sagas[..] else { unreachable!() };

        // Python greets, JavaScript scores, Rust sends the Python greeting.
        assert_eq!(ok["status"], "completed", "{ok:#}");
        assert_eq!(ok["output"]["greeting"], "Hello, Ada!", "{ok:#}");
        assert!(ok["output"]["score"].as_f64().is_some_and(|s| s < 0.8), "{ok:#}");
        assert_eq!(ok["output"]["sent"]["message"], "Hello, Ada!", "{ok:#}");

        // JavaScript refuses for good: not retried, and the Rust reservation is released.
        assert_eq!(fraud["status"], "compensated", "{fraud:#}");
        assert_eq!(fraud["error"]["code"], "fraud_suspected", "{fraud:#}");
        assert_eq!(step(fraud, "screen")["attempts"], 1, "{fraud:#}");
        assert_eq!(step(fraud, "reserve")["compensation"]["output"], json!({ "released": "res-o-2" }), "{fraud:#}");

        // Python raises: `internal` with its traceback, and the saga compensates in order.
        assert_eq!(crash["status"], "compensated", "{crash:#}");
        assert_eq!(crash["error"]["code"], "internal", "{crash:#}");
        let message = crash["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("ZeroDivisionError") && message.contains("_divide"), "{message}");
        assert_eq!(step(crash, "reserve")["compensation"]["output"], json!({ "released": "res-o-3" }), "{crash:#}");
        server.check_histories(&ids).await;
        server.terminate();
    }
    baton_tests::delete_prefix(&prefix);
}
