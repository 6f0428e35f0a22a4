//! Domain types shared by the orchestrator, the stores and the API: the saga record and its
//! history ([`saga`]), instance paths and the ids derived from them (this file), and the
//! timestamps they carry ([`time`]). Below every other module: it imports nothing of ours, so
//! no arrow runs back up from `store/` to `orchestrator/`.
//!
//! # Ids
//!
//! Each step instance has a deterministic *path*: its step's name, prefixed by the path of
//! the `parallel` or `for_each` step whose block it runs in, and suffixed with `#n` for the
//! n-th instance of that step under the same prefix (a loop revisiting it, or the n-th
//! iteration of a `for_each`): `reserve/reserve_one#2`, `ask#3`. Ids derive from it:
//!
//! - idempotency key: `{saga}/{path}/{phase}`, the same for every attempt (and every replay);
//! - correlation id: `{key}/{attempt}`, one per attempt, pairing a command with its result;
//! - timer of a wait or sleep: `{saga}/{path}/timer`.

pub mod saga;
pub mod time;

use serde_json::Value;

pub use saga::*;

/// The path of the `n`-th (1-based) instance of step `name` under `prefix` (empty for the
/// main block).
pub fn instance_path(prefix: &str, name: &str, n: usize) -> String {
    let mut path = String::with_capacity(prefix.len() + name.len() + 4);
    if !prefix.is_empty() {
        path.push_str(prefix);
        path.push('/');
    }
    path.push_str(name);
    if n > 1 {
        path.push('#');
        path.push_str(&n.to_string());
    }
    path
}

/// The idempotency key of one phase of one instance.
pub fn idempotency_key(saga: &str, path: &str, phase: Phase) -> String {
    format!("{saga}/{path}/{}", phase.as_str())
}

/// The correlation id of one attempt.
pub fn correlation_id(key: &str, attempt: u32) -> String {
    format!("{key}/{attempt}")
}

/// The id of the timer of a wait or a sleep.
pub fn timer_id(saga: &str, path: &str) -> String {
    format!("{saga}/{path}/timer")
}

/// `sha256:` and the first 16 hex digits of the SHA-256 of `value` as canonical JSON (object
/// keys sorted), so the same input written in another key order has the same digest.
pub fn digest(value: &Value) -> String {
    fn canonical(v: &Value, out: &mut String) {
        match v {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    canonical(&map[k], out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    canonical(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut text = String::new();
    canonical(value, &mut text);
    digest_text(&text)
}

/// `sha256:` and the first 16 hex digits of the SHA-256 of `text`.
pub fn digest_text(text: &str) -> String {
    use sha2::{Digest as _, Sha256};
    let hash = Sha256::digest(text.as_bytes());
    let hex: String = hash.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_number_repeated_instances() {
        assert_eq!(instance_path("", "charge", 1), "charge");
        assert_eq!(instance_path("", "ask", 3), "ask#3");
        assert_eq!(instance_path("reserve", "reserve_one", 2), "reserve/reserve_one#2");
        let key = idempotency_key("o-1", "reserve/reserve_one#2", Phase::Forward);
        assert_eq!(key, "o-1/reserve/reserve_one#2/forward");
        assert_eq!(correlation_id(&key, 3), "o-1/reserve/reserve_one#2/forward/3");
    }
}
