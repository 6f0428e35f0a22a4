//! JavaScript workers as WebAssembly components, through the real `baton` binary: the SDK's
//! `node guest-sdk/js/build.js` builds `tests/polyglot/probe.js` (the fraud example's command
//! and some that fail) once per test binary (kept across runs while its sources stay the
//! same), with componentize-js installed under the target directory on first use; it is put
//! in a plugin directory with the Rust plugins the workflows use, and the host lists it, runs
//! it, and maps its failures. The SDK's own Node tests run here too.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use baton_tests::{PLUGINS_DIR, baton, js, probes, root, run, step};
use serde_json::{Value, json};

/// The plugin directory: the JavaScript component `jsprobe.wasm`, with the Rust plugins the
/// workflows below use. The first call builds the component, unless a build of the same
/// sources is kept from an earlier run ([`js::component`]), then lists the plugins, which
/// compiles it into the shared cache: the tests after it load it compiled.
fn plugins() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = target().join("polyglot-js-plugins");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the plugin directory");
        for rust in ["testkit", "notification", "inventory", "payment"] {
            let file = format!("{rust}.wasm");
            std::fs::copy(Path::new(PLUGINS_DIR).join(&file), dir.join(&file)).expect("copy a Rust plugin");
        }
        std::fs::copy(js::probe_component(), dir.join("jsprobe.wasm")).expect("copy the JavaScript component");
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

/// The example's directory, holding its workflow.
fn example() -> PathBuf {
    root().join("plugins/js/fraud")
}

/// `baton test-plugin jsprobe.wasm --command COMMAND --input INPUT`: exit code and stdout
/// as JSON.
fn test_plugin(command: &str, input: &str) -> (i32, Value) {
    let wasm = plugins().join("jsprobe.wasm");
    let ran = run(baton().arg("test-plugin").arg(&wasm).args(["--command", command, "--input", input]));
    assert!(ran.code == 0 || ran.code == 2, "{ran}");
    (ran.code, ran.json())
}

#[test]
fn the_sdk_passes_its_own_node_tests() {
    let out = js::node()
        .args(["--test", "guest-sdk/js/test/"])
        .env("BATON_COMPONENTIZE_JS", js::componentize_js())
        .output()
        .expect("run node --test (the JavaScript worker tests need Node 20.6+ on PATH)");
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the JavaScript SDK's tests failed:\n{text}");
    // Every test ran: none skipped for want of componentize-js.
    assert!(text.contains("\n# fail 0") && text.contains("\n# skipped 0"), "{text}");
    assert!(!text.contains("\n# pass 0"), "{text}");
}

#[test]
fn plugins_lists_the_js_component_with_its_commands() {
    let ran = run(baton().env("BATON_PLUGINS", plugins()).args(["plugins", "--json"]));
    assert_eq!(ran.code, 0, "{ran}");
    let listed = ran.json();
    let probe = listed
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "jsprobe"))
        .unwrap_or_else(|| panic!("no jsprobe plugin in {listed:#}"));
    assert_eq!(probe["contract"], "baton:saga@0.2.0");
    let names: Vec<&str> = probe["commands"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "fraud.check",
            "probe.context",
            "probe.crash",
            "probe.decline",
            "probe.echo",
            "probe.flaky",
            "probe.later",
            "probe.throw"
        ]
    );
    // The schemas given to command() come through `describe` as JSON text.
    let check = &probe["commands"][0];
    let schema: Value = serde_json::from_str(check["input_schema"].as_str().unwrap()).unwrap();
    assert_eq!(schema["required"], json!(["order_id", "items"]));
    let output: Value = serde_json::from_str(check["output_schema"].as_str().unwrap()).unwrap();
    assert_eq!(output["properties"]["score"]["maximum"], 1);
    assert_eq!(probe["commands"][1]["input_schema"], Value::Null);
}

#[test]
fn the_checkout_example_completes_with_the_js_screening() {
    // The example's own workflow and input, beside its plugin: screen in JavaScript, the
    // rest in Rust. The scoring service is "busy" twice first: retried by the policy.
    let mut order: Value =
        serde_json::from_str(&std::fs::read_to_string(example().join("checkout.input.json")).unwrap()).unwrap();
    order["flaky_screening"] = json!(2);
    let (code, saga) = probes::run_saga(plugins(), &example(), "checkout", &order.to_string());
    assert_eq!(code, 0, "{saga:#}");
    assert_eq!(saga["status"], "completed");
    let screen = step(&saga, "screen");
    assert_eq!(screen["attempts"], 3, "{screen:#}");
    // 150.00 of 10,000 at 0.6: 0.009; the countries match.
    assert_eq!(
        screen["output"],
        json!({"order_id": "o-7", "score": 0.009, "reasons": ["a total of 150.00"], "screened_by": "screen"})
    );
    assert_eq!(saga["output"]["fraud_score"], 0.009);
    assert!(saga["output"]["payment_id"].is_string(), "{saga:#}");
    assert_eq!(step(&saga, "notify")["output"]["message"], "Order o-7 is confirmed (fraud score 0.009)");
}

#[test]
fn a_suspected_fraud_fails_for_good_and_the_reservation_is_released() {
    let order = json!({
        "order_id": "o-8",
        "customer": "mallory",
        "billing_country": "FR",
        "shipping_country": "NZ",
        "items": [{"sku": "W-9", "qty": 30, "price": 300}],
    });
    let (code, saga) = probes::run_saga(plugins(), &example(), "checkout", &order.to_string());
    assert_eq!(code, 2, "{saga:#}");
    assert_eq!(saga["status"], "compensated");
    let screen = step(&saga, "screen");
    assert_eq!(screen["attempts"], 1, "fraud_suspected is permanent: {screen:#}");
    assert_eq!(screen["error"]["code"], "fraud_suspected");
    // 9,000 of 10,000 at 0.6, the countries differ (0.3), 30 units of one article (0.2).
    assert_eq!(
        screen["error"]["message"],
        "order o-8 scored 1 (a total of 9000.00; billed in FR, shipped to NZ; 30 units of W-9), at or above 0.8"
    );
    assert_eq!(saga["error"]["code"], "fraud_suspected");
    // The stock reserved before is released; the card was never charged.
    let reserve = step(&saga, "reserve");
    assert_eq!(reserve["compensation"]["status"], "completed", "{reserve:#}");
    assert_eq!(reserve["compensation"]["output"], json!({"released": "res-o-8"}));
    assert!(saga["steps"].as_array().unwrap().iter().all(|s| s["name"] != "charge"), "{saga:#}");
}

#[test]
fn an_uncaught_exception_is_the_failure_internal_with_its_stack_and_the_host_goes_on() {
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
catch = [{ errors = ["internal"], next = "string" }]

[[step]]
name = "skipped"
command = "probe.decline"
input = "{ 'code': 'skipped', 'message': 'the catch jumps over this step' }"

[[step]]
name = "string"
command = "probe.throw"
input = "{ 'value': 'the disk is full' }"
catch = [{ errors = ["internal"], next = "number" }]

[[step]]
name = "number"
command = "probe.throw"
input = "{ 'value': 42 }"
catch = [{ errors = ["internal"], next = "after" }]

[[step]]
name = "after"
command = "probe.flaky"
input = "{ 'succeed_on': 1 }"
"#,
    );
    let (code, saga) = probes::run_saga(plugins(), dir.path(), "crash", "{}");
    assert_eq!(code, 0, "{saga:#}");
    let crash = step(&saga, "crash");
    assert_eq!(crash["status"], "failed");
    assert_eq!(crash["attempts"], 1, "internal is permanent: {crash:#}");
    assert_eq!(crash["error"]["code"], "internal", "{crash:#}");
    let message = crash["error"]["message"].as_str().unwrap();
    let (head, stack) = message.split_once('\n').unwrap_or((message, ""));
    assert_eq!(head, "RangeError: cannot divide 7 by zero (uncaught in the handler of probe.crash)");
    // The stack, down to the function that threw, named by the module's own path.
    for frame in ["divide@tests/polyglot/probe.js:", "ratio@tests/polyglot/probe.js:"] {
        assert!(stack.contains(frame), "no {frame:?} in {message}");
    }
    // A thrown value that is not an Error: no stack, but what it was.
    let string = step(&saga, "string");
    assert_eq!(string["error"]["code"], "internal", "{string:#}");
    let message = string["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(r#"uncaught string "the disk is full" in the handler of probe.throw (not an Error"#),
        "{message}"
    );
    let number = step(&saga, "number");
    let message = number["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("uncaught number 42 in the handler of probe.throw"), "{message}");
    // None trapped the host: the same process ran the next JavaScript command.
    assert!(saga["steps"].as_array().unwrap().iter().all(|s| s["name"] != "skipped"), "{saga:#}");
    assert_eq!(step(&saga, "after")["output"]["attempt"], 1);
}

#[test]
fn fatal_fails_at_once_and_retryable_is_retried_up_to_the_policy() {
    probes::fatal_fails_at_once_and_retryable_is_retried_up_to_the_policy(plugins());
}

#[test]
fn test_plugin_runs_one_js_command_and_exits_by_its_outcome() {
    // A result: JSON on stdout, exit 0; the context as the host made it.
    let order = r#"{"order_id": "o-1", "items": [{"sku": "A-1", "qty": 2, "price": 10.5}]}"#;
    let (code, out) = test_plugin("fraud.check", order);
    assert_eq!(code, 0, "{out:#}");
    assert_eq!(out["score"], 0.001);
    let (code, out) = test_plugin("probe.context", "{}");
    assert_eq!(code, 0, "{out:#}");
    assert_eq!((&out["command"], &out["attempt"]), (&json!("probe.context"), &json!(1)), "{out:#}");
    assert!(out["transactionId"].is_string() && out["idempotencyKey"].is_string(), "{out:#}");

    // An async handler: awaited, a timer included.
    let (code, out) = test_plugin("probe.later", r#"{"ms": 5, "parts": ["a", "b"]}"#);
    assert_eq!((code, out), (0, json!({"joined": "A B"})));

    // The handler's own failure: the failure on stdout, exit 2.
    let big = r#"{"order_id": "o-2", "billing_country": "FR", "shipping_country": "US", "items": [{"sku": "A-1", "qty": 1, "price": 9000}]}"#;
    let (code, out) = test_plugin("fraud.check", big);
    assert_eq!(code, 2, "{out:#}");
    assert_eq!((&out["code"], &out["retryable"]), (&json!("fraud_suspected"), &json!(false)), "{out:#}");

    // The host checks the input schema before the handler runs; an uncaught throw is internal.
    let (code, out) = test_plugin("fraud.check", "{}");
    assert_eq!(code, 2, "{out:#}");
    assert_eq!(out["code"], "invalid_input", "{out:#}");
    let (code, out) = test_plugin("probe.throw", r#"{"value": "oops"}"#);
    assert_eq!((code, &out["code"]), (2, &json!("internal")), "{out:#}");

    // No such command: refused by name, exit 1.
    let ran = run(baton().arg("test-plugin").arg(plugins().join("jsprobe.wasm")).args(["--command", "fraud.nope"]));
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains(r#"has no command "fraud.nope"; its commands: fraud.check, probe.context"#), "{ran}");
}
