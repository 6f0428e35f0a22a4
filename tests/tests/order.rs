//! The order saga, end to end: the real `baton` binary, the real plugins, `workflows/order.toml`.

use baton_tests::{baton, order, run, step};
use serde_json::json;

#[test]
fn happy_path_completes_every_step() {
    let ran = run(baton().args(["run", "order", "--input", &order(json!({}))]));
    assert_eq!(ran.code, 0, "{ran}");
    let saga = ran.json();
    assert_eq!(saga["status"], "completed");
    assert_eq!(saga["workflow"], "order");
    assert_eq!(saga["input"]["order_id"], "o-1");
    for name in ["reserve", "charge", "ship", "notify"] {
        let s = step(&saga, name);
        assert_eq!(s["status"], "completed", "{name}: {s}");
        assert_eq!(s["attempts"], 1, "{name}");
        assert!(s["error"].is_null(), "{name}");
        assert!(s["compensation"].is_null(), "{name}");
    }
    assert_eq!(step(&saga, "reserve")["output"]["reservation_id"], "res-o-1");
    assert_eq!(step(&saga, "charge")["output"]["amount"], 21.0);
    let tracking = step(&saga, "ship")["output"]["tracking_number"].as_str().expect("tracking number").to_owned();
    assert!(tracking.starts_with("TRK"), "{tracking}");
    assert_eq!(step(&saga, "notify")["output"]["to"], "ada");
}

#[test]
fn input_can_come_from_a_file() {
    let ran = run(baton().args(["run", "order", "--input", "@workflows/order.input.json"]));
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(ran.json()["status"], "completed");
}

#[test]
fn out_of_stock_fails_the_first_step_with_nothing_to_compensate() {
    let input = order(json!({"items": [{"sku": "A-1", "qty": 101, "price": 1.0}]}));
    let ran = run(baton().args(["run", "order", "--input", &input]));
    assert_eq!(ran.code, 2, "{ran}");
    let saga = ran.json();
    assert_eq!(saga["status"], "compensated");
    assert_eq!(saga["error"]["step"], "reserve");
    assert_eq!(saga["error"]["code"], "out_of_stock");
    let reserve = step(&saga, "reserve");
    assert_eq!(reserve["status"], "failed");
    assert_eq!(reserve["attempts"], 1, "a fatal failure is not retried");
    assert!(reserve["compensation"].is_null(), "a failed step is not compensated");
    for name in ["charge", "ship", "notify"] {
        assert_eq!(step(&saga, name)["status"], "pending", "{name}");
    }
}

#[test]
fn card_declined_releases_the_inventory() {
    let input = order(json!({"items": [{"sku": "A-1", "qty": 2, "price": 6000.0}]}));
    let ran = run(baton().args(["run", "order", "--input", &input]));
    assert_eq!(ran.code, 2, "{ran}");
    let saga = ran.json();
    assert_eq!(saga["status"], "compensated");
    assert_eq!(saga["error"]["code"], "card_declined");
    let reserve = step(&saga, "reserve");
    assert_eq!(reserve["status"], "completed");
    assert_eq!(reserve["compensation"]["command"], "inventory.release");
    assert_eq!(reserve["compensation"]["status"], "completed");
    assert_eq!(reserve["compensation"]["attempts"], 1);
    let charge = step(&saga, "charge");
    assert_eq!(charge["status"], "failed");
    assert_eq!(charge["error"]["code"], "card_declined");
    assert!(charge["compensation"].is_null());
    assert_eq!(step(&saga, "ship")["status"], "pending");
}

#[test]
fn flaky_payment_is_retried_until_it_passes() {
    let ran = run(baton().args(["run", "order", "--input", &order(json!({"flaky_payment": 2}))]));
    assert_eq!(ran.code, 0, "{ran}");
    let saga = ran.json();
    assert_eq!(saga["status"], "completed");
    let charge = step(&saga, "charge");
    assert_eq!(charge["attempts"], 3);
    assert!(charge["error"].is_null(), "the last attempt succeeded: {charge}");
}

#[test]
fn payment_that_stays_flaky_exhausts_retries_and_compensates() {
    let ran = run(baton().args(["run", "order", "--input", &order(json!({"flaky_payment": 5}))]));
    assert_eq!(ran.code, 2, "{ran}");
    let saga = ran.json();
    let charge = step(&saga, "charge");
    assert_eq!(charge["status"], "failed");
    assert_eq!(charge["attempts"], 3, "order.toml allows three attempts");
    assert_eq!(charge["error"]["code"], "gateway_timeout");
    assert_eq!(step(&saga, "reserve")["compensation"]["status"], "completed");
}

#[test]
fn a_client_chosen_id_names_the_saga() {
    let ran = run(baton().args(["run", "order", "--id", "order-42", "--input", &order(json!({}))]));
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(ran.json()["id"], "order-42");
}

#[test]
fn bad_input_json_is_a_usage_error() {
    let ran = run(baton().args(["run", "order", "--input", "{not json"]));
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains("--input is not valid JSON"), "{ran}");
    assert!(ran.stdout.is_empty());
}

#[test]
fn unknown_workflow_is_named_with_the_known_ones() {
    let ran = run(baton().args(["run", "ordr", "--input", "{}"]));
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains(r#"no workflow named "ordr""#), "{ran}");
    assert!(ran.stderr.contains("found: order"), "{ran}");
}

#[test]
fn missing_arguments_exit_1_not_clap_s_2() {
    let ran = run(baton().args(["run", "order"]));
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains("--input"), "{ran}");
}

/// A reader that goes away (`baton run ... | head -0`) ends the output quietly: no panic, and
/// the exit code still says how the saga ended.
#[test]
fn a_closed_stdout_is_not_a_crash() {
    let mut child = baton()
        .args(["run", "order", "--input", &order(serde_json::json!({}))])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader is gone before anything is printed
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
