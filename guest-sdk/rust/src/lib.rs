//! Write [Baton](https://github.com/baton-saga/baton) saga workers in Rust.
//!
//! A worker is a WebAssembly component that handles named commands. Each handler is a plain
//! function from a [`serde`] input type to a [`serde`] output type; [`worker!`] turns a list of
//! them into the component the Baton host loads. The generated WIT glue stays hidden.
//!
//! ```no_run
//! use baton_guest::{Context, Failure};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Charge { order_id: String, amount: f64 }
//!
//! #[derive(Serialize)]
//! struct Receipt { payment_id: String }
//!
//! fn charge(req: Charge, ctx: &Context) -> Result<Receipt, Failure> {
//!     if req.amount > 10_000.0 {
//!         return Err(Failure::permanent("card_declined", "amount over the card limit"));
//!     }
//!     Ok(Receipt { payment_id: format!("pay-{}-{}", req.order_id, ctx.attempt) })
//! }
//!
//! baton_guest::worker! {
//!     "payment.charge" => charge,
//! }
//! # fn main() {}
//! ```
//!
//! Build with `cargo build --target wasm32-wasip2 --release` and drop the `.wasm` into the
//! host's plugin directory. Test with `cargo test`: on the native target, [`testing::Worker`]
//! calls the commands as the host would.
//!
//! # Running a sub-saga
//!
//! A handler can orchestrate work of its own: [`saga::run`] starts a saga of another
//! workflow, waits for its end and hands back its output, typed. The saga is a child of the
//! command's saga and step; its id derives from the command's idempotency key, so if the
//! command is delivered again (a crash, a retry) the call re-attaches to the same child
//! instead of starting a second one.
//!
//! ```no_run
//! use baton_guest::{Context, Failure, saga};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize, Serialize)]
//! struct Order { order_id: String, amount: f64 }
//!
//! #[derive(Deserialize, Serialize)]
//! struct Paid { payment_id: String }
//!
//! fn checkout(order: Order, _: &Context) -> Result<Paid, Failure> {
//!     // Runs the whole `payment` workflow (with its retries and compensations) and returns
//!     // its output; a payment saga that compensated is a permanent failure here.
//!     saga::run::<_, Paid>("payment", &order)
//! }
//!
//! baton_guest::worker! { "shop.checkout" => checkout }
//! # fn main() {}
//! ```
//!
//! While the handler waits, its instance is suspended: it holds no thread of the host and
//! its CPU time does not run, but the step's `timeout` does, so give the step a timeout long
//! enough for the child saga. [`saga::start`] starts a saga without waiting for it,
//! [`saga::signal`] sends one a signal and [`saga::get`] reads its record. On a host that runs
//! no orchestrator every call fails with the permanent code `no_orchestrator`.
//!
//! # Layout
//!
//! - [`Failure`]: what a handler returns when it cannot do its job, and whether a retry helps.
//! - [`Context`]: the command's metadata (saga id, step, attempt, idempotency key).
//! - [`Registry`]: the table of commands [`worker!`] builds; use it directly to attach JSON
//!   Schemas with [`Registry::command_with_schema`], or derive them from the handler's types
//!   with [`Registry::typed`] (`typed "name" => handler` in [`worker!`]).
//!
//! # Schemas
//!
//! A command may declare JSON Schemas for its payload and its result. The host checks them:
//! a payload that does not fit is refused before the handler runs (`invalid_input`, naming the
//! JSON pointer of each violation), a result that does not fit fails the command
//! (`invalid_output`, and the step is compensated, since it ran), and `baton check` finds a
//! step whose input never gives a field the command requires. With the `schemas` feature (on
//! by default) `typed` derives both from the handler's types with [`schemars`].
//! - [`saga`]: start, run, signal and read sagas from a handler.
//! - [`config`]: a config value the plugin's manifest grants (an API key, a region).
//! - [`http`]: outbound HTTP to the hosts the plugin's manifest allows.
//! - [`testing`]: call the commands in a native `cargo test`, without a host, with the
//!   answers of sub-sagas and outbound requests given by the test.
//!
//! # Contract
//!
//! The SDK builds components of `baton:saga@0.2.0` (`wit/saga.wit` in the repository):
//! they export `worker` and, when they call [`saga`], import `orchestrator`. The host also
//! runs components built against `baton:saga@0.1.0`, so plugins built with earlier versions
//! of this crate keep working unchanged.
#![deny(missing_docs)]

use serde::Serialize;
use serde::de::DeserializeOwned;

pub mod http;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

#[doc(hidden)]
pub mod __bindings {
    wit_bindgen::generate!({
        path: "../../wit/saga.wit",
        world: "worker-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_worker_plugin",
        default_bindings_module: "::baton_guest::__bindings",
    });
}

use __bindings::exports::baton::saga::worker as wit;

/// Why a command failed, and whether trying again can help.
///
/// ```
/// use baton_guest::Failure;
/// let f = Failure::retryable("gateway_timeout", "the payment gateway did not answer");
/// assert!(f.retryable);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Short machine-readable code, e.g. `card_declined`.
    pub code: String,
    /// A sentence for a human.
    pub message: String,
    /// True when the same command may succeed if tried again.
    pub retryable: bool,
}

impl Failure {
    /// A failure that may pass if the command is tried again (a timeout, a busy service).
    /// The host retries it with backoff, as the workflow's retry policy allows.
    ///
    /// ```
    /// let f = baton_guest::Failure::retryable("busy", "try later");
    /// assert!(f.retryable);
    /// ```
    pub fn retryable(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into(), retryable: true }
    }

    /// A failure that no retry can fix (a declined card, an invalid order). The saga stops
    /// and compensates the steps it completed.
    ///
    /// ```
    /// let f = baton_guest::Failure::permanent("card_declined", "over the limit");
    /// assert!(!f.retryable);
    /// ```
    pub fn permanent(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into(), retryable: false }
    }

    /// The former name of [`Failure::permanent`].
    ///
    /// ```
    /// # #![allow(deprecated)]
    /// assert!(!baton_guest::Failure::fatal("card_declined", "over the limit").retryable);
    /// ```
    #[deprecated(note = "renamed to `Failure::permanent`: Baton calls a failure retryable or permanent")]
    pub fn fatal(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::permanent(code, message)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Failure {}

/// The metadata of the command being handled.
///
/// ```
/// # fn handler(_: serde_json::Value, ctx: &baton_guest::Context) {
/// let first_try = ctx.attempt == 1;
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Context {
    /// The command name, e.g. `payment.charge`.
    pub command: String,
    /// The saga instance.
    pub transaction_id: String,
    /// Pairs this command with its result; new for every attempt.
    pub correlation_id: String,
    /// Stable across retries of this step: pass it to outside services as their
    /// idempotency key.
    pub idempotency_key: String,
    /// The workflow step that sent the command.
    pub step: String,
    /// 1 for the first try, 2 for the first retry, and so on.
    pub attempt: u32,
    /// W3C trace context, when tracing is on.
    pub traceparent: Option<String>,
}

type Erased = Box<dyn Fn(&str, &Context) -> Result<String, Failure>>;

/// A schema as JSON text, made only when `describe` asks (not on every command).
type SchemaText = Box<dyn Fn() -> String>;

struct Entry {
    name: String,
    input_schema: Option<SchemaText>,
    output_schema: Option<SchemaText>,
    handler: Erased,
}

/// The commands a worker handles. [`worker!`] builds one; write a registration function
/// yourself when you want to attach JSON Schemas:
///
/// ```no_run
/// use baton_guest::{Context, Failure, Registry};
///
/// fn echo(v: serde_json::Value, _: &Context) -> Result<serde_json::Value, Failure> { Ok(v) }
///
/// fn register(r: &mut Registry) {
///     r.command_with_schema("testkit.echo", echo, Some(r#"{"type":"object"}"#), None);
/// }
///
/// baton_guest::worker!(register);
/// # fn main() {}
/// ```
#[derive(Default)]
pub struct Registry {
    entries: Vec<Entry>,
}

impl Registry {
    /// Handle `name` with `handler`. The payload is deserialised into `I`; a payload that
    /// does not fit fails the command with the fatal code `invalid_input`.
    pub fn command<I, O, F>(&mut self, name: &str, handler: F) -> &mut Self
    where
        I: DeserializeOwned,
        O: Serialize,
        F: Fn(I, &Context) -> Result<O, Failure> + 'static,
    {
        self.command_with_schema(name, handler, None, None)
    }

    /// Like [`Registry::command`], with JSON Schemas (as JSON text) for the payload and the
    /// result. The host checks them: a payload that does not fit `input_schema` fails the
    /// command with `invalid_input` before the handler runs, a result that does not fit
    /// `output_schema` fails it with `invalid_output`. `baton plugins` shows them.
    pub fn command_with_schema<I, O, F>(
        &mut self,
        name: &str,
        handler: F,
        input_schema: Option<&str>,
        output_schema: Option<&str>,
    ) -> &mut Self
    where
        I: DeserializeOwned,
        O: Serialize,
        F: Fn(I, &Context) -> Result<O, Failure> + 'static,
    {
        let text = |s: Option<&str>| {
            s.map(|s| -> SchemaText {
                let s = s.to_owned();
                Box::new(move || s.clone())
            })
        };
        self.add(name, handler, text(input_schema), text(output_schema))
    }

    /// Like [`Registry::command`], with the JSON Schemas of `I` and `O` derived from their
    /// types ([`schemars::JsonSchema`]), so the host checks payloads and results against what
    /// the handler's types accept (see [`Registry::command_with_schema`]). The [`worker!`] form
    /// is `typed "name" => handler`.
    ///
    /// ```no_run
    /// use baton_guest::{Context, Failure};
    /// use schemars::JsonSchema;
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Deserialize, JsonSchema)]
    /// struct Charge {
    ///     order_id: String,
    ///     /// A payload with `amount: -5` is refused before the handler runs.
    ///     #[schemars(range(min = 0.01))]
    ///     amount: f64,
    /// }
    ///
    /// #[derive(Serialize, JsonSchema)]
    /// struct Receipt { payment_id: String }
    ///
    /// fn charge(req: Charge, _: &Context) -> Result<Receipt, Failure> {
    ///     Ok(Receipt { payment_id: format!("pay-{}", req.order_id) })
    /// }
    ///
    /// baton_guest::worker! {
    ///     typed "payment.charge" => charge,
    /// }
    /// # fn main() {}
    /// ```
    #[cfg(feature = "schemas")]
    pub fn typed<I, O, F>(&mut self, name: &str, handler: F) -> &mut Self
    where
        I: DeserializeOwned + schemars::JsonSchema + 'static,
        O: Serialize + schemars::JsonSchema + 'static,
        F: Fn(I, &Context) -> Result<O, Failure> + 'static,
    {
        fn text<T: schemars::JsonSchema>() -> String {
            serde_json::to_string(&schemars::schema_for!(T)).expect("a schema is JSON")
        }
        self.add(name, handler, Some(Box::new(text::<I>)), Some(Box::new(text::<O>)))
    }

    /// Run the handler of `ctx.command` on `payload` (JSON text): its result as JSON text,
    /// or its failure (`unknown_command` when no handler has that name).
    fn dispatch(&self, ctx: &Context, payload: &str) -> Result<String, Failure> {
        let Some(entry) = self.entries.iter().find(|e| e.name == ctx.command) else {
            let known: Vec<&str> = self.entries.iter().map(|e| e.name.as_str()).collect();
            return Err(Failure::permanent(
                "unknown_command",
                format!("this worker does not handle {:?} (it handles: {})", ctx.command, known.join(", ")),
            ));
        };
        (entry.handler)(payload, ctx)
    }

    fn add<I, O, F>(
        &mut self,
        name: &str,
        handler: F,
        input_schema: Option<SchemaText>,
        output_schema: Option<SchemaText>,
    ) -> &mut Self
    where
        I: DeserializeOwned,
        O: Serialize,
        F: Fn(I, &Context) -> Result<O, Failure> + 'static,
    {
        let erased: Erased = Box::new(move |payload: &str, ctx: &Context| {
            let input: I = serde_json::from_str(payload).map_err(|e| {
                Failure::permanent(
                    "invalid_input",
                    format!("command {}: payload does not match the expected input: {e}", ctx.command),
                )
            })?;
            let output = handler(input, ctx)?;
            serde_json::to_string(&output).map_err(|e| {
                Failure::permanent("invalid_output", format!("command {}: result is not JSON: {e}", ctx.command))
            })
        });
        self.entries.push(Entry { name: name.to_owned(), input_schema, output_schema, handler: erased });
        self
    }
}

/// The config value `name` the plugin's manifest grants (`[config]` in `<plugin>.toml` beside
/// the `.wasm`), or `None` when it grants none of that name. Values reach the instance as its
/// environment variables, so `std::env::var(name)` reads the same; the host never logs them.
///
/// ```no_run
/// let region = baton_guest::config("region").unwrap_or_else(|| "eu-west-1".to_owned());
/// ```
pub fn config(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Start, run, signal and read sagas from a handler: the `orchestrator` import of
/// `baton:saga@0.2.0`.
///
/// Every call acts on behalf of the command being handled: a saga it starts is a child of
/// that command's saga and step. Inputs and payloads are any [`Serialize`] value, outputs any
/// [`DeserializeOwned`] one; they travel as JSON. A [`Failure`] says whether the same call
/// may succeed if made again (`retryable`); a handler usually returns it as its own, with `?`.
///
/// Ids: [`start`](saga::start) with an id starts the saga under that id (1 to 200
/// characters, no whitespace, control characters or any of `/?#%\`; any other fails with
/// `invalid_id`). Without one, and always for [`run`](saga::run), the id derives from the
/// command's idempotency key and the call's index among this command's calls without an id,
/// counted from 1: a redelivered command that makes the same calls in the same order
/// re-attaches to the sagas its first delivery started. A failed call counts too, so calling
/// again in the same run would start another saga: to try again, return the failure (the
/// step's retry policy retries the command, whose calls re-attach) or name the saga.
///
/// ```no_run
/// use baton_guest::{Context, Failure, saga};
/// use serde_json::{Value, json};
///
/// fn plan(req: Value, ctx: &Context) -> Result<Value, Failure> {
///     // Two sub-sagas side by side: start both, then wait for the second through `get`.
///     let hotel = saga::start("hotel", &req, None)?;
///     let audit = saga::start("audit", &json!({ "by": ctx.transaction_id }), Some("audit-7"))?;
///     saga::signal(&audit, "begin", &json!({}))?;
///     let record = saga::get(&hotel)?;
///     Ok(json!({ "hotel": hotel, "status": record["status"] }))
/// }
/// # fn main() {}
/// ```
pub mod saga {
    use serde::Serialize;
    use serde::de::DeserializeOwned;
    use serde_json::Value;

    use super::Failure;

    /// The `orchestrator` import inside a component.
    #[cfg(target_arch = "wasm32")]
    mod backend {
        use super::super::__bindings::baton::saga::orchestrator as wit;
        use super::super::__bindings::baton::saga::types::Failure as WitFailure;
        use super::Failure;

        fn from_wit(f: WitFailure) -> Failure {
            Failure { code: f.code, message: f.message, retryable: f.retryable }
        }

        pub(super) fn run_saga(workflow: &str, input: &str) -> Result<String, Failure> {
            wit::run_saga(workflow, input).map_err(from_wit)
        }

        pub(super) fn start_saga(workflow: &str, input: &str, id: Option<&str>) -> Result<String, Failure> {
            wit::start_saga(workflow, input, id).map_err(from_wit)
        }

        pub(super) fn signal_saga(id: &str, name: &str, payload: &str) -> Result<(), Failure> {
            wit::signal_saga(id, name, payload).map_err(from_wit)
        }

        pub(super) fn get_saga(id: &str) -> Result<String, Failure> {
            wit::get_saga(id).map_err(from_wit)
        }
    }

    /// On the native target (tests), what the test's [`crate::testing::Worker`] answers.
    #[cfg(not(target_arch = "wasm32"))]
    use crate::testing::fake as backend;

    /// Start (or re-attach to) a saga of `workflow` with `input`, wait for its end and
    /// return its output. A saga that compensated or failed is a permanent failure with the
    /// saga's error code; an output that does not fit `Out` is the permanent
    /// `invalid_output`.
    ///
    /// ```no_run
    /// # use baton_guest::{Failure, saga};
    /// # fn f() -> Result<(), Failure> {
    /// let receipt: serde_json::Value = saga::run("payment", &serde_json::json!({ "amount": 12.5 }))?;
    /// # Ok(()) }
    /// ```
    pub fn run<In, Out>(workflow: &str, input: &In) -> Result<Out, Failure>
    where
        In: Serialize + ?Sized,
        Out: DeserializeOwned,
    {
        let input = to_json("saga::run", "input", input)?;
        let output = backend::run_saga(workflow, &input)?;
        serde_json::from_str(&output).map_err(|e| {
            Failure::permanent(
                "invalid_output",
                format!("saga::run({workflow:?}): the saga's output does not match the expected type: {e}"),
            )
        })
    }

    /// Start a saga of `workflow` with `input` and return its id at once, without waiting
    /// for it: under `id` when given, else under an id derived from the command (see the
    /// module's documentation). Starting again under an existing id with the same workflow
    /// and input re-attaches to that saga.
    ///
    /// ```no_run
    /// # use baton_guest::{Failure, saga};
    /// # fn f() -> Result<(), Failure> {
    /// let id = saga::start("notify", &serde_json::json!({ "to": "ada" }), None)?;
    /// # Ok(()) }
    /// ```
    pub fn start<In>(workflow: &str, input: &In, id: Option<&str>) -> Result<String, Failure>
    where
        In: Serialize + ?Sized,
    {
        let input = to_json("saga::start", "input", input)?;
        backend::start_saga(workflow, &input, id)
    }

    /// Send signal `name` with `payload` to saga `id`.
    ///
    /// ```no_run
    /// # use baton_guest::{Failure, saga};
    /// # fn f() -> Result<(), Failure> {
    /// saga::signal("order-7", "approved", &serde_json::json!({ "by": "ada" }))?;
    /// # Ok(()) }
    /// ```
    pub fn signal<P>(id: &str, name: &str, payload: &P) -> Result<(), Failure>
    where
        P: Serialize + ?Sized,
    {
        let payload = to_json("saga::signal", "payload", payload)?;
        backend::signal_saga(id, name, &payload)
    }

    /// Saga `id`'s record, as `GET /v1/sagas/{id}` returns it: `status`, `output`, `error`,
    /// the steps.
    ///
    /// ```no_run
    /// # use baton_guest::{Failure, saga};
    /// # fn f() -> Result<(), Failure> {
    /// let done = saga::get("order-7")?["status"] == "completed";
    /// # Ok(()) }
    /// ```
    pub fn get(id: &str) -> Result<Value, Failure> {
        let record = backend::get_saga(id)?;
        serde_json::from_str(&record).map_err(|e| {
            Failure::permanent("invalid_output", format!("saga::get({id:?}): the record is not JSON: {e}"))
        })
    }

    fn to_json<T: Serialize + ?Sized>(call: &str, what: &str, value: &T) -> Result<String, Failure> {
        serde_json::to_string(value).map_err(|e| {
            Failure::permanent("invalid_input", format!("{call}: the {what} is not serialisable as JSON: {e}"))
        })
    }
}

/// Glue used by [`worker!`]; not part of the public API.
#[doc(hidden)]
pub mod __private {
    use super::*;

    pub use __bindings::exports::baton::saga::worker::Guest;

    pub fn describe(register: fn(&mut Registry)) -> Vec<wit::CommandSpec> {
        let mut r = Registry::default();
        register(&mut r);
        r.entries
            .into_iter()
            .map(|e| wit::CommandSpec {
                name: e.name,
                input_schema: e.input_schema.map(|s| s()),
                output_schema: e.output_schema.map(|s| s()),
            })
            .collect()
    }

    pub fn handle(register: fn(&mut Registry), cmd: wit::Command) -> Result<String, wit::Failure> {
        let mut r = Registry::default();
        register(&mut r);
        let meta = cmd.meta;
        let ctx = Context {
            command: cmd.name,
            transaction_id: meta.transaction_id,
            correlation_id: meta.correlation_id,
            idempotency_key: meta.idempotency_key,
            step: meta.step,
            attempt: meta.attempt,
            traceparent: meta.traceparent,
        };
        r.dispatch(&ctx, &cmd.payload).map_err(into_wit)
    }

    fn into_wit(f: Failure) -> wit::Failure {
        wit::Failure { code: f.code, message: f.message, retryable: f.retryable }
    }
}

/// One entry of [`worker!`]'s list; not part of the public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __register {
    ($r:ident, typed $name:literal => $handler:path) => {
        $r.typed($name, $handler)
    };
    ($r:ident, $name:literal => $handler:path) => {
        $r.command($name, $handler)
    };
}

/// Turn handlers into a Baton worker component.
///
/// Either list `"command.name" => handler` pairs, or name a registration function
/// `fn(&mut Registry)`. A handler is `fn(I, &Context) -> Result<O, Failure>` where `I` is
/// any `Deserialize` type and `O` any `Serialize` type. Write `typed "command.name" =>
/// handler` to declare the JSON Schemas of `I` and `O` too, derived from the types (they
/// must also derive [`schemars::JsonSchema`]; see [`Registry::typed`]): the host then
/// refuses a payload or a result that does not fit. Invoke it once per crate.
///
/// The list form also defines `baton_commands`, its registration function, for
/// [`testing::Worker::new`](crate::testing::Worker::new): a native `cargo test` calls the
/// commands through it.
///
/// ```no_run
/// use baton_guest::{Context, Failure};
///
/// fn reserve(order: serde_json::Value, _: &Context) -> Result<serde_json::Value, Failure> {
///     Ok(serde_json::json!({ "reserved": order }))
/// }
///
/// baton_guest::worker! {
///     "inventory.reserve" => reserve,
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! worker {
    ($($($typed:ident)? $name:literal => $handler:path),+ $(,)?) => {
        /// The registration function of this worker's commands (`worker!`'s list form):
        /// `baton_guest::testing::Worker::new(baton_commands)` calls them in a native test.
        #[allow(dead_code)]
        pub(crate) fn baton_commands(r: &mut $crate::Registry) {
            $( $crate::__register!(r, $($typed)? $name => $handler); )+
        }
        $crate::worker!(baton_commands);
    };
    ($register:path) => {
        struct __BatonWorker;
        impl $crate::__private::Guest for __BatonWorker {
            fn describe() -> ::std::vec::Vec<$crate::__bindings::exports::baton::saga::worker::CommandSpec> {
                $crate::__private::describe($register)
            }
            fn handle(
                cmd: $crate::__bindings::exports::baton::saga::worker::Command,
            ) -> ::std::result::Result<::std::string::String, $crate::__bindings::exports::baton::saga::worker::Failure> {
                $crate::__private::handle($register, cmd)
            }
        }
        $crate::__bindings::__export_worker_plugin!(__BatonWorker with_types_in $crate::__bindings);
    };
}
