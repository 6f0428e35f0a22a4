//! The order saga, end to end: the real `baton` binary, the real plugins, `workflows/order.toml`.

use baton_tests::{baton, order, run, step};
use serde_json::json;

/// The instances of step `name`, in the order they began.
fn instances<'a>(saga: &'a serde_json::Value, name: &str) -> Vec<&'a serde_json::Value> {
    saga["steps"].as_array().unwrap().iter().filter(|s| s["name"] == name).collect()
}

/// Two items, so that the for_each runs twice.
fn two_items(extra: serde_json::Value) -> String {
    let mut v: serde_json::Value = serde_json::from_str(&order(json!({
        "items": [{"sku": "A-1", "qty": 2, "price": 10.5}, {"sku": "B-7", "qty": 1, "price": 4.0}]
    })))
    .unwrap();
    for (k, val) in extra.as_object().unwrap() {
        v[k] = val.clone();
    }
    v.to_string()
}

#[test]
fn happy_path_reserves_each_item_then_pays_and_ships_side_by_side() {
    let ran = run(baton().args(["run", "order", "--input", &two_items(json!({}))]));
    assert_eq!(ran.code, 0, "{ran}");
    let saga = ran.json();
    assert_eq!(saga["status"], "completed");
    assert_eq!(saga["workflow"], "order");
    let paths: Vec<&str> = saga["steps"].as_array().unwrap().iter().map(|s| s["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "reserve",
            "reserve/reserve_one",
            "reserve/reserve_one#2",
            "review",
            "settle",
            "settle/charge",
            "settle/ship",
            "notify"
        ],
        "{saga:#}"
    );
    for s in saga["steps"].as_array().unwrap() {
        assert_eq!(s["status"], "completed", "{s}");
        assert!(s["error"].is_null() && s["compensation"].is_null(), "{s}");
        assert!(s["started_at"].as_str().unwrap().ends_with('Z'), "RFC 3339 times: {s}");
    }
    let reserved = instances(&saga, "reserve_one");
    assert_eq!(reserved[0]["input"], json!({"order_id": "o-1-0", "items": [{"sku": "A-1", "qty": 2, "price": 10.5}]}));
    assert_eq!(reserved[1]["output"]["reservation_id"], "res-o-1-1");
    assert_eq!(step(&saga, "reserve")["output"].as_array().unwrap().len(), 2, "the iterations' outputs, in order");
    assert_eq!(step(&saga, "settle")["output"]["pay"]["amount"], 25.0);
    let tracking = step(&saga, "settle")["output"]["ship"]["tracking_number"].as_str().unwrap().to_owned();
    assert!(tracking.starts_with("TRK"), "{tracking}");
    assert_eq!(step(&saga, "notify")["output"]["to"], "ada");
    assert_eq!(saga["output"], json!({"order_id": "o-1", "payment_id": "pay-o-1", "tracking_number": tracking}));
}

#[test]
fn input_can_come_from_a_file() {
    let ran = run(baton().args(["run", "order", "--input", "@workflows/order.input.json"]));
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(ran.json()["status"], "completed");
}

#[test]
fn out_of_stock_undoes_the_items_reserved_before_it() {
    let input =
        order(json!({"items": [{"sku": "A-1", "qty": 1, "price": 1.0}, {"sku": "B-7", "qty": 101, "price": 1.0}]}));
    let ran = run(baton().args(["run", "order", "--input", &input]));
    assert_eq!(ran.code, 2, "{ran}");
    let saga = ran.json();
    assert_eq!(saga["status"], "compensated");
    assert_eq!(saga["error"]["step"], "reserve");
    assert_eq!(saga["error"]["code"], "out_of_stock");
    let reserved = instances(&saga, "reserve_one");
    assert_eq!(reserved[0]["status"], "completed");
    assert_eq!(reserved[0]["compensation"]["status"], "completed");
    assert_eq!(
        reserved[0]["compensation"]["input"], reserved[0]["output"],
        "a compensation gets what its step returned"
    );
    assert_eq!(reserved[1]["status"], "failed");
    assert_eq!(reserved[1]["attempts"], 1, "a permanent failure is not retried");
    assert!(reserved[1]["compensation"].is_null(), "a failed step is not compensated");
    assert!(instances(&saga, "charge").is_empty(), "nothing after the failed for_each began");
}

#[test]
fn card_declined_cancels_the_parcel_and_releases_every_item_in_reverse_order() {
    let input = two_items(
        json!({"items": [{"sku": "A-1", "qty": 2, "price": 6000.0}, {"sku": "B-7", "qty": 1, "price": 1.0}]}),
    );
    let ran = run(baton().args(["run", "order", "--input", &input, "--id", "declined-1"]));
    assert_eq!(ran.code, 2, "{ran}");
    let saga = ran.json();
    assert_eq!(saga["status"], "compensated");
    assert_eq!(saga["error"]["code"], "card_declined");
    let charge = step(&saga, "charge");
    assert_eq!(charge["status"], "failed");
    assert!(charge["compensation"].is_null());
    // Ship ran beside the charge: it completed, so it is undone too.
    assert_eq!(step(&saga, "ship")["compensation"]["command"], "shipping.cancel");
    // Undone in reverse order of completion (the log's numbers), one at a time: ship was the
    // last to complete, then the items in the order their reservations came back.
    let mut undone: Vec<(u64, &serde_json::Value)> = saga["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| !s["compensation"].is_null())
        .map(|s| (s["seq"].as_u64().unwrap(), s))
        .collect();
    assert_eq!(undone.len(), 3, "both items and the parcel: {saga:#}");
    undone.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
    assert_eq!(undone[0].1["path"], "settle/ship");
    for pair in undone.windows(2) {
        let ended = pair[0].1["compensation"]["ended_at"].as_str().unwrap();
        let began = pair[1].1["compensation"]["started_at"].as_str().unwrap();
        assert!(ended <= began, "{} undone before {} began: {saga:#}", pair[0].1["path"], pair[1].1["path"]);
    }
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
    assert_eq!(step(&saga, "reserve_one")["compensation"]["status"], "completed");
}

#[test]
fn a_big_order_waits_for_approval_and_goes_on_when_approved() {
    let input = order(json!({"total": 2500.0}));
    let ran = run(baton().args([
        "run",
        "order",
        "--input",
        &input,
        "--signal",
        r#"approved={"approved": true, "by": "maria"}"#,
    ]));
    assert_eq!(ran.code, 0, "{ran}");
    let saga = ran.json();
    assert_eq!(step(&saga, "approval")["output"]["by"], "maria");
    assert_eq!(step(&saga, "notify")["status"], "completed");
}

#[test]
fn a_big_order_refused_by_the_manager_is_rejected_and_undone() {
    let input = order(json!({"total": 2500.0}));
    let ran = run(baton().args(["run", "order", "--input", &input, "--signal", r#"approved={"approved": false}"#]));
    assert_eq!(ran.code, 2, "{ran}");
    let saga = ran.json();
    assert_eq!(saga["error"]["code"], "rejected");
    assert_eq!(step(&saga, "reserve_one")["compensation"]["status"], "completed");
    assert!(instances(&saga, "charge").is_empty());
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
    assert!(
        ran.stderr.contains("found: book_flight, book_hotel, booking_agent, order, order_fraud, rent_car, trip"),
        "{ran}"
    );
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
