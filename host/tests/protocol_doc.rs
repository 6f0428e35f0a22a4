//! docs/PROTOCOL.md's example events are what the host really writes and reads: each fenced
//! `json` block under a `<!-- protocol-example: KIND -->` comment is decoded with the real
//! decoder of its kind and encoded again, and the two must agree attribute by attribute and
//! field by field (but for the attributes the comment lists after `free:`, which the protocol
//! leaves to the sender, e.g. a worker's own `source`).

use serde_json::Value;

use baton::bus::cloudevents;

/// One marked example: its kind, the attributes left to the sender, its JSON, its line.
struct Example {
    kind: String,
    free: Vec<String>,
    json: String,
    line: usize,
}

fn examples(doc: &str) -> Vec<Example> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(marker) = lines[i].trim().strip_prefix("<!-- protocol-example:").and_then(|m| m.strip_suffix("-->"))
        else {
            i += 1;
            continue;
        };
        let (kind, free) = match marker.split_once(';') {
            Some((kind, rest)) => {
                let list = rest
                    .trim()
                    .strip_prefix("free:")
                    .unwrap_or_else(|| panic!("PROTOCOL.md:{}: write `; free: a, b` after the kind", i + 1));
                (kind.trim(), list.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
            }
            None => (marker.trim(), Vec::new()),
        };
        let fence = i + 1;
        assert_eq!(
            lines.get(fence).map(|l| l.trim()),
            Some("```json"),
            "PROTOCOL.md:{}: a ```json block must follow the marker",
            i + 1
        );
        let end = (fence + 1..lines.len())
            .find(|&j| lines[j].trim() == "```")
            .unwrap_or_else(|| panic!("PROTOCOL.md:{}: the json block never ends", fence + 1));
        out.push(Example { kind: kind.to_owned(), free, json: lines[fence + 1..end].join("\n"), line: fence + 1 });
        i = end + 1;
    }
    out
}

/// Where `a` and `b` differ, as JSON pointers.
fn differences(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let (va, vb) = (x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null));
                if !x.contains_key(k) || !y.contains_key(k) {
                    out.push(format!("{path}/{k}: documented {va}, encoded {vb}"));
                } else {
                    differences(&format!("{path}/{k}"), va, vb, out);
                }
            }
        }
        _ if a != b => out.push(format!("{path}: documented {a}, encoded {b}")),
        _ => {}
    }
}

#[test]
fn every_example_event_in_the_protocol_doc_is_what_the_encoder_writes() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md")).unwrap();
    let examples = examples(&doc);
    let count = |kind: &str| examples.iter().filter(|e| e.kind == kind).count();
    assert!(count("command") >= 2 && count("result") >= 3 && count("signal") >= 1, "examples missing from PROTOCOL.md");
    for e in &examples {
        let at = format!("PROTOCOL.md:{} ({})", e.line, e.kind);
        let documented: Value = serde_json::from_str(&e.json).unwrap_or_else(|err| panic!("{at}: not JSON: {err}"));
        let encoded = match e.kind.as_str() {
            "command" => cloudevents::encode_command(
                &cloudevents::decode_command(&e.json)
                    .unwrap_or_else(|err| panic!("{at}: the decoder refuses it: {err}")),
            ),
            "result" => cloudevents::encode_result(
                &cloudevents::decode_result(&e.json)
                    .unwrap_or_else(|err| panic!("{at}: the decoder refuses it: {err}")),
            ),
            "signal" => cloudevents::encode_signal(
                &cloudevents::decode_signal(&e.json)
                    .unwrap_or_else(|err| panic!("{at}: the decoder refuses it: {err}")),
            ),
            other => panic!("{at}: unknown example kind {other:?}"),
        };
        let mut encoded: Value = serde_json::from_str(&encoded).unwrap();
        let mut documented = documented;
        for key in &e.free {
            assert!(
                documented.get(key).is_some() || encoded.get(key).is_some(),
                "{at}: free attribute {key:?} is in neither"
            );
            documented.as_object_mut().unwrap().remove(key);
            encoded.as_object_mut().unwrap().remove(key);
        }
        let mut diff = Vec::new();
        differences("", &documented, &encoded, &mut diff);
        assert!(diff.is_empty(), "{at}: the example is not what Baton writes:\n{}", diff.join("\n"));
    }
}

/// What a worker writes by the document's tables alone (every required attribute, no
/// optional one) is read, and a result missing a required attribute is refused: the tables'
/// "required" column is the decoder's.
#[test]
fn the_required_attributes_of_a_result_are_the_decoders() {
    let minimal = serde_json::json!({
        "specversion": "1.0", "type": "baton.result.v1", "source": "w", "id": "x",
        "subject": "fraud.score", "datacontenttype": "application/json",
        "transactionid": "o-7", "correlationid": "o-7/fraud_check/forward/1", "idempotencykey": "o-7/fraud_check/forward",
        "data": {"step": "fraud_check", "attempt": 1, "outcome": {"ok": null}},
        "someextension": "ignored"
    });
    let r = cloudevents::decode_result(&minimal.to_string()).expect("a result with the required attributes");
    assert_eq!(r.meta.correlation_id, "o-7/fraud_check/forward/1");
    for key in [
        "specversion",
        "type",
        "source",
        "id",
        "subject",
        "datacontenttype",
        "transactionid",
        "correlationid",
        "idempotencykey",
        "data",
    ] {
        let mut v = minimal.clone();
        v.as_object_mut().unwrap().remove(key);
        assert!(cloudevents::decode_result(&v.to_string()).is_err(), "a result without {key} must be refused");
    }
    for key in ["step", "attempt", "outcome"] {
        let mut v = minimal.clone();
        v["data"].as_object_mut().unwrap().remove(key);
        assert!(cloudevents::decode_result(&v.to_string()).is_err(), "a result without data.{key} must be refused");
    }
    let mut v = minimal.clone();
    v["data"]["outcome"] = serde_json::json!({"err": {"code": "x", "message": "y"}});
    assert!(cloudevents::decode_result(&v.to_string()).is_err(), "a failure without retryable must be refused");
}
