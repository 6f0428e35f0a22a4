//! The HTTP API under hostile requests, on a real host (in process): every answer to a bad
//! request is a 4xx with the one JSON error shape, no saga is half-created, and the host
//! stays up.

use baton_tests::server::{InProcess, config, order_case};
use serde_json::{Value, json};

/// The error of an answer: its status must be `status` and its body `{"error": {code, message}}`.
fn error_of(status: u16, expected: u16, body: &str) -> (String, String) {
    assert_eq!(status, expected, "{body}");
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    let (code, message) = (&v["error"]["code"], &v["error"]["message"]);
    assert!(code.is_string() && message.is_string(), "not the error shape: {body}");
    assert_eq!(v.as_object().unwrap().len(), 1, "nothing beside `error`: {body}");
    (code.as_str().unwrap().to_owned(), message.as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_json_errors_and_change_nothing() {
    let data = tempfile::tempdir().unwrap();
    let host = InProcess::start(config(data.path())).await;
    let input = order_case(0).0;
    let post = |body: Vec<u8>| host.request("POST", "/v1/sagas", Some(body));

    // Malformed and wrongly typed bodies.
    for body in [
        b"{not json".to_vec(),
        b"".to_vec(),
        b"[]".to_vec(),
        br#"{"workflow": 5}"#.to_vec(),
        br#"{"workflow": "order", "id": 7}"#.to_vec(),
        br#"{"workflow": "order", "surprise": true}"#.to_vec(),
        "[".repeat(100_000).into_bytes(),
        format!("{}{}", "{\"a\":".repeat(10_000), "1").into_bytes(),
    ] {
        let (status, _, text) = post(body.clone()).await;
        let (code, _) = error_of(status, 400, &text);
        assert_eq!(code, "invalid_request", "{}", String::from_utf8_lossy(&body[..body.len().min(60)]));
    }
    // Too big: over the 1 MiB limit. The client gets the answer, not a broken pipe: the host
    // reads the rest of the body before it closes the connection. 8 MiB is more than the
    // socket buffers hold, so a host that closed at once would fail this every time.
    let huge = json!({"workflow": "order", "input": {"blob": "x".repeat(8 << 20)}}).to_string().into_bytes();
    for _ in 0..5 {
        let (status, _, text) = post(huge.clone()).await;
        let (code, message) = error_of(status, 413, &text);
        assert_eq!(code, "body_too_large");
        assert!(message.contains("1024 KiB"), "{message}");
    }

    // Ids that cannot name a saga.
    for id in ["", "   ", "a/b", "a?b", "tab\there", "line\nbreak", "50%", &"x".repeat(201)] {
        let (status, text) = host.start_saga("order", id, &input).await.unwrap();
        let (code, message) = error_of(status, 400, &text.to_string());
        assert_eq!(code, "invalid_id", "{id:?}");
        assert!(message.contains("1 to 200 characters"), "{message}");
    }
    // Unicode is fine, and the limit counts characters, not bytes.
    for id in ["commande-é-✓", &"é".repeat(200)] {
        let (status, saga) = host.start_saga("order", id, &input).await.unwrap();
        assert_eq!(status, 201, "{id}: {saga}");
        let path: String = id.bytes().map(|b| format!("%{b:02X}")).collect();
        let (status, got) = host.get(&format!("/v1/sagas/{path}")).await;
        assert_eq!((status, got["id"].as_str()), (200, Some(id)));
    }

    // Unknown routes and methods, and bad query strings.
    for (method, path, expected, expected_code) in [
        ("GET", "/nope", 404, "unknown_route"),
        ("GET", "/v1/sagas/a/b/c", 404, "unknown_route"),
        ("DELETE", "/v1/sagas", 405, "method_not_allowed"),
        ("PUT", "/healthz", 405, "method_not_allowed"),
        ("GET", "/v1/sagas?limit=abc", 400, "invalid_request"),
        ("GET", "/v1/sagas?limit=-1", 400, "invalid_request"),
        ("GET", "/v1/sagas?bogus=1", 400, "invalid_request"),
        ("GET", "/v1/sagas?status=bogus", 400, "invalid_status"),
        ("GET", "/v1/sagas/commande-%C3%A9-%E2%9C%93?wait=abc", 400, "invalid_request"),
        ("GET", "/v1/sagas/commande-%C3%A9-%E2%9C%93?wait=-1", 400, "invalid_request"),
        ("GET", "/v1/sagas/%FF%FE", 400, "invalid_request"),
        ("GET", "/v1/sagas/missing/history", 404, "not_found"),
    ] {
        let (status, headers, text) = host.request(method, path, None).await;
        let (code, _) = error_of(status, expected, &text);
        assert_eq!(code, expected_code, "{method} {path}: {text}");
        if status == 405 {
            assert!(headers.contains_key("allow"), "{method} {path}: a 405 says what is allowed");
        }
    }

    // Nothing above created a saga, and the host is still up.
    let (status, list) = host.get("/v1/sagas").await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 2, "only the two unicode sagas: {list:#}");
    assert_eq!(host.get("/healthz").await.0, 200);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_id_is_a_safe_retry_or_a_conflict() {
    let data = tempfile::tempdir().unwrap();
    let host = InProcess::start(config(data.path())).await;
    let input = order_case(0).0;
    let (status, first) = host.start_saga("order", "same", &input).await.unwrap();
    assert_eq!(status, 201);
    // The same input in another key order is the same input.
    let reordered: Value = serde_json::from_str(&{
        let mut keys: Vec<(String, Value)> = input.as_object().unwrap().clone().into_iter().collect();
        keys.reverse();
        serde_json::to_string(&keys.into_iter().collect::<serde_json::Map<_, _>>()).unwrap()
    })
    .unwrap();
    let (status, again) = host.start_saga("order", "same", &reordered).await.unwrap();
    assert_eq!(status, 200, "a retried start returns the saga: {again}");
    assert_eq!(again["created_at"], first["created_at"]);
    // Another input under the same id is refused, with both digests.
    let (status, err) = host.start_saga("order", "same", &order_case(1).0).await.unwrap();
    let (code, message) = error_of(status, 409, &err.to_string());
    assert_eq!(code, "id_taken");
    assert_eq!(message.matches("sha256:").count(), 2, "{message}");
    let digest = baton::orchestrator::digest(&input);
    assert!(message.contains(&digest), "the existing input's digest {digest}: {message}");

    // Concurrent starts of one new id: exactly one creates it.
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let (url, input) = (host.url.clone(), input.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({"workflow": "order", "id": "race", "input": input});
            reqwest::Client::new().post(format!("{url}/v1/sagas")).json(&body).send().await.unwrap().status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|&&s| s == 201).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|&s| s == 201 || s == 200), "{statuses:?}");
    host.stop().await;
}
