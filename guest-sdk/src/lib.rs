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
//! host's plugin directory.
//!
//! # Layout
//!
//! - [`Failure`]: what a handler returns when it cannot do its job, and whether a retry helps.
//! - [`Context`]: the command's metadata (saga id, step, attempt, idempotency key).
//! - [`Registry`]: the table of commands [`worker!`] builds; use it directly to attach JSON
//!   Schemas with [`Registry::command_with_schema`].
#![deny(missing_docs)]

use serde::Serialize;
use serde::de::DeserializeOwned;

#[doc(hidden)]
pub mod __bindings {
    wit_bindgen::generate!({
        path: "../wit",
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

struct Entry {
    name: String,
    input_schema: Option<String>,
    output_schema: Option<String>,
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
    /// result. The host shows them in `baton plugins`.
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
        self.entries.push(Entry {
            name: name.to_owned(),
            input_schema: input_schema.map(str::to_owned),
            output_schema: output_schema.map(str::to_owned),
            handler: erased,
        });
        self
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
            .map(|e| wit::CommandSpec { name: e.name, input_schema: e.input_schema, output_schema: e.output_schema })
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
        let Some(entry) = r.entries.iter().find(|e| e.name == ctx.command) else {
            let known: Vec<&str> = r.entries.iter().map(|e| e.name.as_str()).collect();
            return Err(into_wit(Failure::permanent(
                "unknown_command",
                format!("this worker does not handle {:?} (it handles: {})", ctx.command, known.join(", ")),
            )));
        };
        (entry.handler)(&cmd.payload, &ctx).map_err(into_wit)
    }

    fn into_wit(f: Failure) -> wit::Failure {
        wit::Failure { code: f.code, message: f.message, retryable: f.retryable }
    }
}

/// Turn handlers into a Baton worker component.
///
/// Either list `"command.name" => handler` pairs, or name a registration function
/// `fn(&mut Registry)`. A handler is `fn(I, &Context) -> Result<O, Failure>` where `I` is
/// any `Deserialize` type and `O` any `Serialize` type. Invoke it once per crate.
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
    ($($name:literal => $handler:path),+ $(,)?) => {
        fn __baton_register(r: &mut $crate::Registry) {
            $( r.command($name, $handler); )+
        }
        $crate::worker!(__baton_register);
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
