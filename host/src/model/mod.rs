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
//!
//! A sub-saga's id derives from what started it, so a replayed decision or a redelivered
//! command re-attaches to the same child instead of starting a second one:
//!
//! - a `workflow` step's child ([`sub_saga_id`]): the parent's id and the instance path,
//!   `/` read as `.` and `#` as `~` (saga ids hold neither), and `@n` for attempt n > 1:
//!   `order-1.ship`, `trip-7.book.flight@2`;
//! - the n-th sub-saga a command handler starts without naming one ([`call_saga_id`]): the
//!   command's idempotency key read the same way, and the call's index: `order-1.plan.1`.
//!
//! A saga id given from outside (the API's `"id"`, `baton start --id`, a worker's
//! `start-saga`) must pass [`check_id`]; every derived id does.

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

/// Longest saga id, in characters.
pub const MAX_ID_CHARS: usize = 200;

/// Characters a saga id may not hold besides whitespace and control characters: they mean
/// something in a URL path or query, so an id holding one could not be addressed plainly.
pub const ID_FORBIDDEN: &str = "/?#%\\";

/// Whether `id` may name a saga; the error says what an id may be. The one rule for an id
/// given from outside: by the HTTP API, `baton start --id`, and a worker's `start-saga`.
pub fn check_id(id: &str) -> Result<(), String> {
    let chars = id.chars().count();
    let bad = id.chars().find(|c| c.is_whitespace() || c.is_control() || ID_FORBIDDEN.contains(*c));
    if chars == 0 || chars > MAX_ID_CHARS || bad.is_some() {
        let shown: String = id.chars().take(40).collect();
        let why = match bad {
            Some(c) => format!("it holds {c:?}"),
            None => format!("it has {chars} characters"),
        };
        return Err(format!(
            "{shown:?}{} is not a saga id ({why}): an id is 1 to {MAX_ID_CHARS} characters, with no whitespace, control characters or any of {ID_FORBIDDEN}",
            if chars > 40 { "..." } else { "" }
        ));
    }
    Ok(())
}

/// Longest id a derivation gives; a longer one keeps its head and a digest of the whole.
pub const MAX_DERIVED_ID: usize = MAX_ID_CHARS;

/// `key` as a saga id: `/` becomes `.`, `#` becomes `~`, the `/forward` suffix is dropped,
/// and an id past [`MAX_DERIVED_ID`] characters keeps its head and ends with a digest.
fn id_from(key: &str, suffix: &str) -> String {
    let key = key.strip_suffix("/forward").unwrap_or(key);
    let mut id: String = key
        .chars()
        .map(|c| match c {
            '/' => '.',
            '#' => '~',
            c if c.is_whitespace() || c.is_control() || "?%\\".contains(c) => '_',
            c => c,
        })
        .collect();
    id.push_str(suffix);
    if id.chars().count() > MAX_DERIVED_ID {
        let digest = digest_text(&id);
        let hex = digest.trim_start_matches("sha256:");
        let head: String = id.chars().take(MAX_DERIVED_ID - hex.len() - 1).collect();
        id = format!("{head}~{hex}");
    }
    id
}

/// The id of the child saga that attempt `attempt` of a `workflow` step starts, from the
/// step's forward idempotency key (see the module documentation). A `handles` workflow
/// answering a command from another deployment derives its saga's id the same way.
pub fn sub_saga_id(idempotency_key: &str, attempt: u32) -> String {
    if attempt > 1 { id_from(idempotency_key, &format!("@{attempt}")) } else { id_from(idempotency_key, "") }
}

/// The id of the `index`-th (1-based) sub-saga a command handler starts without naming one,
/// from the command's idempotency key: a redelivered command re-attaches to the same child.
pub fn call_saga_id(idempotency_key: &str, index: u32) -> String {
    id_from(idempotency_key, &format!(".{index}"))
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

    #[test]
    fn sub_saga_ids_are_saga_ids_derived_from_what_started_them() {
        let key = idempotency_key("trip-7", "book/flight#2", Phase::Forward);
        assert_eq!(sub_saga_id(&key, 1), "trip-7.book.flight~2");
        assert_eq!(sub_saga_id(&key, 3), "trip-7.book.flight~2@3");
        assert_eq!(call_saga_id("o-1/plan/forward", 1), "o-1.plan.1");
        assert_eq!(call_saga_id("o-1/plan/compensate", 2), "o-1.plan.compensate.2");
        // Another deployment's keys may hold anything: what an id may not hold is replaced.
        assert_eq!(sub_saga_id("a b/c?d%e\\f/forward", 1), "a_b.c_d_e_f");
        let long = "x".repeat(300);
        let id = sub_saga_id(&format!("{long}/step/forward"), 1);
        assert_eq!(id.chars().count(), MAX_DERIVED_ID);
        assert_ne!(id, sub_saga_id(&format!("{long}y/step/forward"), 1), "the digest tells long keys apart");
    }

    #[test]
    fn ids_are_checked_and_derived_ids_pass_the_check() {
        assert_eq!(check_id("order-1"), Ok(()));
        for bad in ["", "a b", "a/b", "a?b", "a#b", "a%b", "a\\b", "a\nb"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
        let long = "x".repeat(MAX_ID_CHARS + 1);
        assert!(check_id(&long).unwrap_err().contains("201 characters"));
        assert_eq!(check_id(&long[1..]), Ok(()));
        for key in ["o-1/plan/forward", "a b/c?d%e\\f#2/forward", &format!("{long}/step/forward")] {
            assert_eq!(check_id(&call_saga_id(key, 7)), Ok(()), "{key}");
            assert_eq!(check_id(&sub_saga_id(key, 2)), Ok(()), "{key}");
        }
    }
}
