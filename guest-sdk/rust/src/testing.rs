//! Test handlers without a host: on the native target, with `cargo test`.
//!
//! A [`Worker`] holds a worker's registry, as [`worker!`](crate::worker) builds it, and calls
//! its commands the way the host does: the input goes in as JSON text, the handler's result
//! comes back as JSON, an unknown command or a payload that does not fit the handler's input
//! type is the same [`Failure`] the host would get. What a handler asks of the world is
//! answered by the test: [`Worker::saga`] gives the output of a sub-saga ([`crate::saga`]),
//! [`Worker::http`] the answer to an outbound request ([`crate::http`]), and [`Worker::calls`]
//! lists what the handler asked, in order.
//!
//! ```
//! use baton_guest::testing::{self, Worker};
//! use baton_guest::{Context, Failure};
//! use serde_json::{Value, json};
//!
//! fn charge(req: Value, ctx: &Context) -> Result<Value, Failure> {
//!     if req["amount"].as_f64() > Some(10_000.0) {
//!         return Err(Failure::permanent("card_declined", "amount over the card limit"));
//!     }
//!     Ok(json!({ "payment_id": format!("pay-{}", ctx.attempt) }))
//! }
//!
//! baton_guest::worker! { "payment.charge" => charge }
//!
//! # fn main() {
//! // `worker!`'s list form defines `baton_commands`, its registration function.
//! let worker = Worker::new(baton_commands);
//! assert_eq!(worker.call("payment.charge", &json!({ "amount": 12.5 })), Ok(json!({ "payment_id": "pay-1" })));
//! assert_eq!(worker.call("payment.charge", &json!({ "amount": 20_000 })).unwrap_err().code, "card_declined");
//!
//! // Another attempt: any field of the context, the rest from `testing::context`.
//! let second = Context { attempt: 2, ..testing::context("payment.charge") };
//! assert_eq!(worker.call_with(&second, &json!({ "amount": 1 })), Ok(json!({ "payment_id": "pay-2" })));
//! # }
//! ```
//!
//! What it does not do: check the commands' JSON Schemas (the host does; `baton test-plugin
//! FILE.wasm --command C --input JSON` runs one command through the real sandbox, schemas
//! included), or stop a handler that runs too long. A panic is the test's panic.

use std::cell::RefCell;
use std::rc::Rc;

use serde::Serialize;
use serde_json::{Value, json};

use crate::http::{Request, Response};
use crate::{Context, Failure, Registry};

/// A context for a test of `command`: saga `test-saga`, step `step`, attempt 1. Change a
/// field with struct update syntax: `Context { attempt: 3, ..context("x.y") }`.
pub fn context(command: &str) -> Context {
    Context {
        command: command.to_owned(),
        transaction_id: "test-saga".to_owned(),
        correlation_id: "test-saga/step/1".to_owned(),
        idempotency_key: "test-saga/step".to_owned(),
        step: "step".to_owned(),
        attempt: 1,
        traceparent: None,
    }
}

/// What a handler asked of the host during a [`Worker`]'s calls, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// [`crate::saga::run`].
    RunSaga {
        /// The workflow.
        workflow: String,
        /// Its input.
        input: Value,
    },
    /// [`crate::saga::start`].
    StartSaga {
        /// The workflow.
        workflow: String,
        /// Its input.
        input: Value,
        /// The id asked for, if any.
        id: Option<String>,
    },
    /// [`crate::saga::signal`].
    Signal {
        /// The saga.
        id: String,
        /// The signal's name.
        name: String,
        /// Its payload.
        payload: Value,
    },
    /// [`crate::saga::get`].
    GetSaga {
        /// The saga.
        id: String,
    },
    /// [`crate::http`]: a request sent.
    Http {
        /// `GET`, `POST`, ...
        method: String,
        /// The whole URL.
        url: String,
        /// The body, as text (invalid UTF-8 replaced).
        body: String,
    },
}

type SagaAnswer = Box<dyn Fn(&Value) -> Result<Value, Failure>>;
type HttpAnswer = Box<dyn Fn(&Request) -> Result<Response, Failure>>;

/// What the test answers, and what the handler asked.
#[derive(Default)]
struct World {
    sagas: Vec<(String, SagaAnswer)>,
    http: Option<HttpAnswer>,
    calls: Vec<Call>,
    /// The sagas started, by id: (workflow, input).
    started: Vec<(String, String, Value)>,
}

thread_local! {
    /// The world of the [`Worker`] whose call is running on this thread.
    static CURRENT: RefCell<Option<Rc<RefCell<World>>>> = const { RefCell::new(None) };
}

/// A worker's commands, called without a host. See the [module](self).
pub struct Worker {
    registry: Registry,
    world: Rc<RefCell<World>>,
}

impl Worker {
    /// The worker that `register` builds: the function given to [`worker!`](crate::worker),
    /// or `baton_commands`, which `worker!`'s list form defines.
    pub fn new(register: fn(&mut Registry)) -> Worker {
        let mut registry = Registry::default();
        register(&mut registry);
        Worker { registry, world: Rc::default() }
    }

    /// The names of its commands, as the host lists them.
    pub fn commands(&self) -> Vec<&str> {
        self.registry.entries.iter().map(|e| e.name.as_str()).collect()
    }

    /// The JSON Schema of `command`'s input, when it declares one.
    pub fn input_schema(&self, command: &str) -> Option<Value> {
        let entry = self.registry.entries.iter().find(|e| e.name == command)?;
        entry.input_schema.as_ref().map(|s| serde_json::from_str(&s()).expect("a schema is JSON"))
    }

    /// The JSON Schema of `command`'s result, when it declares one.
    pub fn output_schema(&self, command: &str) -> Option<Value> {
        let entry = self.registry.entries.iter().find(|e| e.name == command)?;
        entry.output_schema.as_ref().map(|s| serde_json::from_str(&s()).expect("a schema is JSON"))
    }

    /// Run `command` with `input` on its first attempt ([`context`]): its result as JSON, or
    /// its failure.
    pub fn call<I: Serialize + ?Sized>(&self, command: &str, input: &I) -> Result<Value, Failure> {
        self.call_with(&context(command), input)
    }

    /// Run `ctx.command` with `input` and that context (another attempt, another step).
    pub fn call_with<I: Serialize + ?Sized>(&self, ctx: &Context, input: &I) -> Result<Value, Failure> {
        let payload = serde_json::to_string(input)
            .map_err(|e| Failure::permanent("invalid_input", format!("the test's input is not JSON: {e}")))?;
        let previous = CURRENT.with(|c| c.replace(Some(self.world.clone())));
        // Put the previous world back even when the handler panics.
        struct Restore(Option<Rc<RefCell<World>>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                CURRENT.with(|c| *c.borrow_mut() = self.0.take());
            }
        }
        let _restore = Restore(previous);
        let text = self.registry.dispatch(ctx, &payload)?;
        Ok(serde_json::from_str(&text).expect("a handler's result is JSON"))
    }

    /// Answer [`crate::saga::run`] of `workflow` (and [`crate::saga::get`] of a saga of it
    /// that [`crate::saga::start`] started) with `answer(input)`: `Ok(output)` for a saga
    /// that completed, `Err(failure)` for one that compensated or failed.
    pub fn saga(&mut self, workflow: &str, answer: impl Fn(&Value) -> Result<Value, Failure> + 'static) -> &mut Worker {
        self.world.borrow_mut().sagas.push((workflow.to_owned(), Box::new(answer)));
        self
    }

    /// Answer every outbound request ([`crate::http`]) with `answer(request)`.
    pub fn http(&mut self, answer: impl Fn(&Request) -> Result<Response, Failure> + 'static) -> &mut Worker {
        self.world.borrow_mut().http = Some(Box::new(answer));
        self
    }

    /// What the handlers asked of the host so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.world.borrow().calls.clone()
    }
}

/// The world of the running [`Worker::call`], or the failure a handler gets outside one.
fn world(what: &str) -> Result<Rc<RefCell<World>>, Failure> {
    CURRENT.with(|c| c.borrow().clone()).ok_or_else(|| {
        Failure::permanent(
            "no_host",
            format!(
                "{what} runs only inside the Baton host or a test Worker: in a native test, call the handler \
                 through baton_guest::testing::Worker and give the answer with Worker::saga or Worker::http"
            ),
        )
    })
}

/// The answer to `workflow` with `input`.
fn answer(world: &World, workflow: &str, input: &Value) -> Result<Value, Failure> {
    let Some((_, answer)) = world.sagas.iter().rev().find(|(w, _)| w == workflow) else {
        return Err(Failure::permanent(
            "unknown_workflow",
            format!("no answer for workflow {workflow:?} in this test: give one with Worker::saga({workflow:?}, ...)"),
        ));
    };
    answer(input)
}

/// The fakes behind [`crate::saga`] and [`crate::http`] on the native target.
pub(crate) mod fake {
    use super::*;

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).expect("the SDK sends JSON")
    }

    pub(crate) fn run_saga(workflow: &str, input: &str) -> Result<String, Failure> {
        let world = world("saga::run")?;
        let input = parse(input);
        world.borrow_mut().calls.push(Call::RunSaga { workflow: workflow.to_owned(), input: input.clone() });
        let output = answer(&world.borrow(), workflow, &input)?;
        Ok(output.to_string())
    }

    pub(crate) fn start_saga(workflow: &str, input: &str, id: Option<&str>) -> Result<String, Failure> {
        let world = world("saga::start")?;
        let input = parse(input);
        let mut w = world.borrow_mut();
        w.calls.push(Call::StartSaga {
            workflow: workflow.to_owned(),
            input: input.clone(),
            id: id.map(str::to_owned),
        });
        let id = id.map(str::to_owned).unwrap_or_else(|| format!("{workflow}-{}", w.started.len() + 1));
        w.started.push((id.clone(), workflow.to_owned(), input));
        Ok(id)
    }

    pub(crate) fn signal_saga(id: &str, name: &str, payload: &str) -> Result<(), Failure> {
        let world = world("saga::signal")?;
        let payload = parse(payload);
        world.borrow_mut().calls.push(Call::Signal { id: id.to_owned(), name: name.to_owned(), payload });
        Ok(())
    }

    pub(crate) fn get_saga(id: &str) -> Result<String, Failure> {
        let world = world("saga::get")?;
        world.borrow_mut().calls.push(Call::GetSaga { id: id.to_owned() });
        let w = world.borrow();
        let Some((_, workflow, input)) = w.started.iter().find(|(s, _, _)| s == id) else {
            return Err(Failure::permanent("not_found", format!("no saga {id:?} was started in this test")));
        };
        let record = match answer(&w, workflow, input) {
            Ok(output) => json!({ "id": id, "workflow": workflow, "status": "completed", "output": output }),
            Err(f) => json!({
                "id": id, "workflow": workflow, "status": "compensated",
                "error": { "code": f.code, "message": f.message },
            }),
        };
        Ok(record.to_string())
    }

    pub(crate) fn http(request: &Request) -> Result<Response, Failure> {
        let world = world("http")?;
        world.borrow_mut().calls.push(Call::Http {
            method: request.method().to_owned(),
            url: request.url().to_owned(),
            body: String::from_utf8_lossy(request.body_bytes()).into_owned(),
        });
        let w = world.borrow();
        let Some(answer) = &w.http else {
            return Err(Failure::permanent(
                "http_denied",
                format!(
                    "{} {}: no answer for outbound HTTP in this test: give one with Worker::http",
                    request.method(),
                    request.url()
                ),
            ));
        };
        answer(request)
    }
}

#[cfg(test)]
#[allow(unsafe_code)] // what `worker!` expands to exports functions, as in any worker crate
mod tests {
    use serde::{Deserialize, Serialize};
    use serde_json::{Value, json};

    use super::{Call, Worker, context};
    use crate::http::{Request, Response};
    use crate::{Context, Failure, saga};

    #[derive(Deserialize)]
    struct Trip {
        city: String,
    }

    #[derive(Serialize)]
    struct Plan {
        hotel: Value,
        audit: String,
        score: u32,
    }

    /// A handler that asks for everything a handler can ask of the host.
    fn plan(trip: Trip, ctx: &Context) -> Result<Plan, Failure> {
        let hotel = saga::run::<_, Value>("hotel", &json!({ "city": trip.city }))?;
        let audit = saga::start("audit", &json!({ "by": ctx.transaction_id }), None)?;
        saga::signal(&audit, "begin", &json!({}))?;
        let record = saga::get(&audit)?;
        let score = Request::post("https://fraud.example/score").json(&json!({ "city": trip.city }))?.send()?;
        let score: Value = score.json()?;
        Ok(Plan {
            hotel,
            audit: record["status"].as_str().unwrap_or_default().to_owned(),
            score: score["score"].as_u64().unwrap_or(0) as u32,
        })
    }

    crate::worker! { "trip.plan" => plan }

    #[test]
    fn a_handler_gets_the_tests_answers_and_its_calls_are_listed_in_order() {
        let mut worker = Worker::new(baton_commands);
        assert_eq!(worker.commands(), ["trip.plan"]);
        worker.saga("hotel", |input| Ok(json!({ "booked": input["city"] }))).saga("audit", |_| Ok(json!({}))).http(
            |request| {
                assert_eq!(request.headers(), [("content-type".to_owned(), "application/json".to_owned())]);
                Ok(Response::new(200, r#"{"score": 7}"#))
            },
        );
        let out = worker.call("trip.plan", &json!({ "city": "Rome" })).expect("the plan");
        assert_eq!(out, json!({ "hotel": { "booked": "Rome" }, "audit": "completed", "score": 7 }));
        assert_eq!(
            worker.calls(),
            [
                Call::RunSaga { workflow: "hotel".into(), input: json!({ "city": "Rome" }) },
                Call::StartSaga { workflow: "audit".into(), input: json!({ "by": "test-saga" }), id: None },
                Call::Signal { id: "audit-1".into(), name: "begin".into(), payload: json!({}) },
                Call::GetSaga { id: "audit-1".into() },
                Call::Http {
                    method: "POST".into(),
                    url: "https://fraud.example/score".into(),
                    body: r#"{"city":"Rome"}"#.into()
                },
            ]
        );
    }

    #[test]
    fn what_the_test_does_not_answer_fails_with_a_code_that_says_so() {
        let mut worker = Worker::new(baton_commands);
        let f = worker.call("trip.plan", &json!({ "city": "Rome" })).unwrap_err();
        assert_eq!((f.code.as_str(), f.retryable), ("unknown_workflow", false));
        assert!(f.message.contains("Worker::saga(\"hotel\""), "{f}");
        worker.saga("hotel", |_| Err(Failure::permanent("no_room", "full"))).saga("audit", |_| Ok(json!({})));
        assert_eq!(worker.call("trip.plan", &json!({ "city": "Rome" })).unwrap_err().code, "no_room");
        worker.saga("hotel", |_| Ok(json!({})));
        let f = worker.call("trip.plan", &json!({ "city": "Rome" })).unwrap_err();
        assert_eq!(f.code, "http_denied", "{f}");
    }

    #[test]
    fn the_host_side_failures_are_the_same_as_the_hosts() {
        let worker = Worker::new(baton_commands);
        let f = worker.call("trip.book", &json!({})).unwrap_err();
        assert_eq!(f.code, "unknown_command");
        assert!(f.message.contains("it handles: trip.plan"), "{f}");
        let f = worker.call("trip.plan", &json!({ "town": "Rome" })).unwrap_err();
        assert_eq!((f.code.as_str(), f.retryable), ("invalid_input", false));
        let ctx = Context { attempt: 2, ..context("trip.plan") };
        assert_eq!(ctx.step, "step");
    }

    #[test]
    fn outside_a_test_worker_a_host_call_fails_instead_of_panicking() {
        let f = saga::run::<_, Value>("hotel", &json!({})).unwrap_err();
        assert_eq!(f.code, "no_host");
        assert!(f.message.contains("testing::Worker"), "{f}");
        assert_eq!(crate::http::get("https://example.com").unwrap_err().code, "no_host");
    }
}
