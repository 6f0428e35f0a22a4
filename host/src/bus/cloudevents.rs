//! The wire format: CloudEvents 1.0, JSON structured mode, with Baton's extension attributes
//! `transactionid`, `correlationid`, `idempotencykey` and `traceparent` at the top level, so
//! any process that speaks CloudEvents can route, trace or answer them without knowing Baton.
//! docs/PROTOCOL.md documents it for workers outside the host, field by field; a test
//! (`host/tests/protocol_doc.rs`) checks its examples against these functions, so a change
//! here goes there too.
//!
//! ```json
//! { "specversion": "1.0", "type": "baton.command.v1", "source": "baton",
//!   "id": "<correlation id>", "subject": "payment.charge",
//!   "datacontenttype": "application/json",
//!   "transactionid": "...", "correlationid": "...", "idempotencykey": "...",
//!   "data": { "payload": {...}, "step": "charge", "attempt": 1, "timeout_ms": 5000,
//!             "deadline": "2026-12-01T11:45:09.123Z" } }
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::BusError;
use crate::protocol::{CommandMessage, Meta, Outcome, ResultMessage, SignalMessage};

pub const COMMAND_TYPE: &str = "baton.command.v1";
pub const RESULT_TYPE: &str = "baton.result.v1";
/// A signal for a saga, from anyone: `transactionid` names the saga, `subject` the signal,
/// `data` is the payload.
pub const SIGNAL_TYPE: &str = "baton.signal.v1";

#[derive(Serialize, Deserialize)]
struct Envelope<D> {
    specversion: String,
    #[serde(rename = "type")]
    kind: String,
    source: String,
    id: String,
    subject: String,
    datacontenttype: String,
    transactionid: String,
    correlationid: String,
    idempotencykey: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    traceparent: Option<String>,
    data: D,
}

#[derive(Serialize, Deserialize)]
struct CommandData {
    payload: Value,
    step: String,
    attempt: u32,
    timeout_ms: u64,
    /// Never start the command at or after this time (RFC 3339); absent: no deadline.
    #[serde(default, with = "crate::model::time::option", skip_serializing_if = "Option::is_none")]
    deadline: Option<u64>,
    /// Never start the command at or after this time (RFC 3339), when the step has a queue
    /// timeout; absent: until `deadline`.
    #[serde(default, with = "crate::model::time::option", skip_serializing_if = "Option::is_none")]
    start_by: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct ResultData {
    step: String,
    attempt: u32,
    outcome: Outcome,
}

fn envelope<D>(kind: &str, subject: &str, meta: &Meta, data: D) -> Envelope<D> {
    Envelope {
        specversion: "1.0".into(),
        kind: kind.into(),
        source: "baton".into(),
        id: meta.correlation_id.clone(),
        subject: subject.into(),
        datacontenttype: "application/json".into(),
        transactionid: meta.transaction_id.clone(),
        correlationid: meta.correlation_id.clone(),
        idempotencykey: meta.idempotency_key.clone(),
        traceparent: meta.traceparent.clone(),
        data,
    }
}

fn meta_of<D>(e: &Envelope<D>, step: String, attempt: u32) -> Meta {
    Meta {
        transaction_id: e.transactionid.clone(),
        correlation_id: e.correlationid.clone(),
        idempotency_key: e.idempotencykey.clone(),
        step,
        attempt,
        traceparent: e.traceparent.clone(),
    }
}

/// A command as CloudEvents JSON.
pub fn encode_command(c: &CommandMessage) -> String {
    let data = CommandData {
        payload: c.payload.clone(),
        step: c.meta.step.clone(),
        attempt: c.meta.attempt,
        timeout_ms: c.timeout_ms,
        deadline: (c.deadline_ms != 0).then_some(c.deadline_ms),
        start_by: (c.start_by_ms != 0).then_some(c.start_by_ms),
    };
    serde_json::to_string(&envelope(COMMAND_TYPE, &c.name, &c.meta, data)).expect("a command serialises")
}

/// A command from CloudEvents JSON; the error says what is wrong with it.
/// Why `text`, which did not decode, is not an event we take (the `reason` of
/// `baton_bus_events_dropped_total`): `not_json`, `wrong_type` (a CloudEvent of another
/// type), or `not_an_event` (JSON without the fields).
pub fn drop_reason(text: &str) -> &'static str {
    match serde_json::from_str::<serde_json::Value>(text) {
        Err(_) => "not_json",
        Ok(v)
            if v.get("type")
                .and_then(|t| t.as_str())
                .is_some_and(|t| ![COMMAND_TYPE, RESULT_TYPE, SIGNAL_TYPE].contains(&t)) =>
        {
            "wrong_type"
        }
        Ok(_) => "not_an_event",
    }
}

pub fn decode_command(text: &str) -> Result<CommandMessage, BusError> {
    let e: Envelope<CommandData> =
        serde_json::from_str(text).map_err(|e| BusError::corrupt("not a Baton command event", e))?;
    if e.kind != COMMAND_TYPE {
        return Err(BusError::corrupt(
            "not a Baton command event",
            format!("event type {:?} is not {COMMAND_TYPE}", e.kind),
        ));
    }
    let meta = meta_of(&e, e.data.step.clone(), e.data.attempt);
    Ok(CommandMessage {
        name: e.subject,
        payload: e.data.payload,
        meta,
        timeout_ms: e.data.timeout_ms,
        deadline_ms: e.data.deadline.unwrap_or(0),
        start_by_ms: e.data.start_by.unwrap_or(0),
    })
}

/// A result as CloudEvents JSON.
pub fn encode_result(r: &ResultMessage) -> String {
    let data = ResultData { step: r.meta.step.clone(), attempt: r.meta.attempt, outcome: r.outcome.clone() };
    serde_json::to_string(&envelope(RESULT_TYPE, &r.command, &r.meta, data)).expect("a result serialises")
}

/// A result from CloudEvents JSON.
pub fn decode_result(text: &str) -> Result<ResultMessage, BusError> {
    let e: Envelope<ResultData> =
        serde_json::from_str(text).map_err(|e| BusError::corrupt("not a Baton result event", e))?;
    if e.kind != RESULT_TYPE {
        return Err(BusError::corrupt(
            "not a Baton result event",
            format!("event type {:?} is not {RESULT_TYPE}", e.kind),
        ));
    }
    let meta = meta_of(&e, e.data.step.clone(), e.data.attempt);
    Ok(ResultMessage { command: e.subject, meta, outcome: e.data.outcome })
}

/// A signal event: only what a signal needs, so an outside sender writes five fields.
#[derive(Serialize, Deserialize)]
struct SignalEnvelope {
    specversion: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    source: String,
    id: String,
    subject: String,
    #[serde(default)]
    datacontenttype: Option<String>,
    transactionid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    traceparent: Option<String>,
    #[serde(default)]
    data: Value,
}

/// A signal as CloudEvents JSON.
pub fn encode_signal(s: &SignalMessage) -> String {
    let e = SignalEnvelope {
        specversion: "1.0".into(),
        kind: SIGNAL_TYPE.into(),
        source: "baton".into(),
        id: s.id.clone(),
        subject: s.name.clone(),
        datacontenttype: Some("application/json".into()),
        transactionid: s.saga_id.clone(),
        traceparent: None,
        data: s.payload.clone(),
    };
    serde_json::to_string(&e).expect("a signal serialises")
}

/// A signal from CloudEvents JSON.
pub fn decode_signal(text: &str) -> Result<SignalMessage, BusError> {
    let e: SignalEnvelope = serde_json::from_str(text).map_err(|e| BusError::corrupt("not a Baton signal event", e))?;
    if e.kind != SIGNAL_TYPE {
        return Err(BusError::corrupt(
            "not a Baton signal event",
            format!("event type {:?} is not {SIGNAL_TYPE}", e.kind),
        ));
    }
    Ok(SignalMessage { saga_id: e.transactionid, name: e.subject, payload: e.data, id: e.id })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Failure;
    use serde_json::json;

    fn meta() -> Meta {
        Meta {
            transaction_id: "t".into(),
            correlation_id: "t/s/forward/2".into(),
            idempotency_key: "t/s/forward".into(),
            step: "s".into(),
            attempt: 2,
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        }
    }

    #[test]
    fn commands_round_trip_with_cloudevents_attributes() {
        let c = CommandMessage {
            name: "payment.charge".into(),
            payload: json!({"a": 1}),
            meta: meta(),
            timeout_ms: 5_000,
            deadline_ms: 1_796_125_509_123,
            start_by_ms: 1_796_125_505_000,
        };
        let text = encode_command(&c);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["transactionid"], "t");
        assert_eq!(v["idempotencykey"], "t/s/forward");
        assert_eq!(v["traceparent"], "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        assert_eq!(v["data"]["deadline"], "2026-12-01T11:45:09.123Z");
        assert_eq!(v["data"]["start_by"], "2026-12-01T11:45:05.000Z");
        assert_eq!(decode_command(&text).unwrap(), c);
    }

    #[test]
    fn results_round_trip() {
        for outcome in [Outcome::Ok(json!({"x": [1, 2]})), Outcome::Err(Failure::retryable("busy", "later"))] {
            let r = ResultMessage { command: "payment.charge".into(), meta: meta(), outcome };
            assert_eq!(decode_result(&encode_result(&r)).unwrap(), r);
        }
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert!(decode_command("{").unwrap_err().to_string().contains("not a Baton command event"));
        let r = ResultMessage { command: "c".into(), meta: meta(), outcome: Outcome::Ok(json!(1)) };
        assert!(decode_command(&encode_result(&r)).is_err());
    }
}
