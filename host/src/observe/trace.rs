//! Traces over OTLP/HTTP: one trace per saga tree, as W3C trace context carries it.
//!
//! # The shape of a trace
//!
//! | span | kind | parent | where it is made |
//! |---|---|---|---|
//! | `saga WORKFLOW` | server | the span the saga was started in (none for a root) | the commit that ends the saga |
//! | `step PATH` / `compensate PATH` | internal | the saga's span | the commit of the attempt's result |
//! | `wait PATH`, `sleep PATH`, ... (steps that are not commands) | internal | the saga's span | the commit that ends the step |
//! | `store commit` | internal | the saga's span | every commit |
//! | `send cmd:COMMAND` | producer | the attempt's span | the commit that dispatches it |
//! | `process cmd:COMMAND` | consumer | the attempt's span | the worker that handles it, on any host |
//! | `handle COMMAND` | internal | the worker's `process` span | the same worker; a sub-saga a plugin starts hangs under it |
//!
//! A saga outlives the process that began it (it may wait for days, and move between hosts),
//! so spans are not held open. Each is written whole when what it measures ends, with ids
//! derived from the record: the saga's span id from its id, an attempt's from its correlation
//! id ([`span_id`]). Any host that commits the end of an attempt can write its span, and the
//! command carries the attempt's context in `traceparent` before anyone has written it.
//! A sub-saga's record keeps the context it was started in ([`crate::model::Saga::trace`]),
//! so the tree is one trace.
//!
//! # Cost
//!
//! [`enabled`] is one atomic load. With no endpoint set it is false, no saga gets a trace
//! context, and nothing else here runs. With one, spans go to a bounded queue; a thread of
//! their own batches them to the collector (protobuf over HTTP, the blocking client), so a
//! slow or absent collector costs the hot path nothing but the queue's `try_send`. A full
//! queue drops spans and counts them (`baton_trace_spans_dropped_total`).

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanContext, SpanKind, Status, TraceFlags, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue, SpanId, TraceId};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter, SpanLinks};

/// Spans waiting for the export thread; past this, new ones are dropped (and counted).
const QUEUE: usize = 16_384;

/// Most spans in one export request.
const BATCH: usize = 512;

/// How long a span waits for its batch to fill, unless `OTEL_BSP_SCHEDULE_DELAY` (ms) says.
const DEFAULT_DELAY: Duration = Duration::from_secs(1);

/// How long the host waits for the last spans to go out when it stops.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

static ENABLED: AtomicBool = AtomicBool::new(false);
static QUEUE_TX: OnceLock<SyncSender<Msg>> = OnceLock::new();
static THREAD: Mutex<Option<std::thread::JoinHandle<()>>> = Mutex::new(None);

enum Msg {
    Span(Box<SpanData>),
    Flush(std::sync::mpsc::Sender<()>),
}

/// Whether this process exports traces.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Where traces go: `--otlp URL` (an OTLP/HTTP base URL, `/v1/traces` is added unless it is
/// there), else the standard variables (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, then
/// `OTEL_EXPORTER_OTLP_ENDPOINT`). `None`: nothing is exported (also when
/// `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`).
pub fn endpoint(flag: Option<&str>) -> Option<String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
    {
        return None;
    }
    if let Some(base) = flag.filter(|f| !f.trim().is_empty()) {
        return Some(traces_url(base));
    }
    env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT").map(|b| traces_url(&b)))
}

/// An OTLP/HTTP base URL with the traces path.
fn traces_url(base: &str) -> String {
    let base = base.trim().trim_end_matches('/');
    if base.ends_with("/v1/traces") { base.to_owned() } else { format!("{base}/v1/traces") }
}

/// Start exporting to `url` (see [`endpoint`]), as service `OTEL_SERVICE_NAME` (default
/// `baton`). Once per process; later calls do nothing. Call [`shutdown`] before exiting, or
/// the last second of spans is lost.
pub fn init(url: &str) -> anyhow::Result<()> {
    if QUEUE_TX.get().is_some() {
        return Ok(());
    }
    let service = std::env::var("OTEL_SERVICE_NAME").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "baton".into());
    let delay = std::env::var("OTEL_BSP_SCHEDULE_DELAY")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(DEFAULT_DELAY, Duration::from_millis);
    let url = url.to_owned();
    let (tx, rx) = sync_channel(QUEUE);
    // The exporter (and its blocking client) is made on its own thread: a blocking client
    // must not be built or dropped inside the async runtime.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new().name("baton-otlp".into()).spawn(move || {
        let built = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(url.clone())
            .with_timeout(Duration::from_secs(10))
            .build();
        match built {
            Ok(mut exporter) => {
                let resource = Resource::builder()
                    .with_service_name(service)
                    .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                    .with_attribute(KeyValue::new("process.pid", i64::from(std::process::id())))
                    .build();
                exporter.set_resource(&resource);
                let _ = ready_tx.send(Ok(()));
                export_loop(exporter, rx, delay, &url);
            }
            Err(e) => {
                let _ = ready_tx.send(Err(anyhow::anyhow!("cannot export traces to {url}: {e}")));
            }
        }
    })?;
    ready_rx.recv().map_err(|_| anyhow::anyhow!("the trace export thread died"))??;
    let _ = QUEUE_TX.set(tx);
    *THREAD.lock().expect("trace thread lock poisoned") = Some(thread);
    ENABLED.store(true, Ordering::Relaxed);
    Ok(())
}

/// Send what is queued and wait for it (at most [`FLUSH_TIMEOUT`]). Tests and a stopping
/// host call it; spans made afterwards still export, at the next batch.
pub fn flush() {
    let Some(tx) = QUEUE_TX.get() else { return };
    let (ack_tx, ack_rx) = std::sync::mpsc::channel();
    if tx.send(Msg::Flush(ack_tx)).is_ok() {
        let _ = ack_rx.recv_timeout(FLUSH_TIMEOUT);
    }
}

/// Flush and stop exporting (the host is stopping).
pub fn shutdown() {
    if !enabled() {
        return;
    }
    flush();
    ENABLED.store(false, Ordering::Relaxed);
}

fn export_loop(exporter: opentelemetry_otlp::SpanExporter, rx: Receiver<Msg>, delay: Duration, url: &str) {
    let mut batch: Vec<SpanData> = Vec::new();
    let mut due = Instant::now() + delay;
    let mut warned: Option<Instant> = None;
    let mut send = |batch: &mut Vec<SpanData>| {
        if batch.is_empty() {
            return;
        }
        let n = batch.len();
        if let Err(e) = futures_executor::block_on(exporter.export(std::mem::take(batch))) {
            super::metrics::spans_dropped("export_failed", n);
            // Once a minute at most: a collector that is away must not flood the log.
            if warned.is_none_or(|w| w.elapsed() > Duration::from_secs(60)) {
                tracing::warn!("cannot export {n} spans to {url}: {e}; spans are dropped until it answers");
                warned = Some(Instant::now());
            }
        }
    };
    loop {
        match rx.recv_timeout(due.saturating_duration_since(Instant::now())) {
            Ok(Msg::Span(span)) => {
                batch.push(*span);
                if batch.len() >= BATCH {
                    send(&mut batch);
                    due = Instant::now() + delay;
                }
            }
            Ok(Msg::Flush(ack)) => {
                while let Ok(Msg::Span(span)) = rx.try_recv() {
                    batch.push(*span);
                }
                send(&mut batch);
                let _ = ack.send(());
            }
            Err(RecvTimeoutError::Timeout) => {
                send(&mut batch);
                due = Instant::now() + delay;
            }
            Err(RecvTimeoutError::Disconnected) => {
                send(&mut batch);
                return;
            }
        }
    }
}

/// A W3C trace context: `00-TRACE-SPAN-FLAGS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    pub trace: u128,
    pub span: u64,
    pub sampled: bool,
}

impl Context {
    /// Read a `traceparent` header value; `None` for anything that is not version 00 of the
    /// format with a valid (non-zero) trace id.
    pub fn parse(text: &str) -> Option<Context> {
        let mut parts = text.trim().split('-');
        let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || parts.next().is_some() || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
            return None;
        }
        let trace = u128::from_str_radix(trace, 16).ok().filter(|t| *t != 0)?;
        let span = u64::from_str_radix(span, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(Context { trace, span, sampled: flags & 1 == 1 })
    }

    /// A new trace, with no parent span.
    pub fn root() -> Context {
        Context { trace: random_u128(), span: 0, sampled: true }
    }

    /// The same trace, at another span.
    pub fn at(self, span: u64) -> Context {
        Context { span, ..self }
    }

    /// Written as a `traceparent` value.
    pub fn header(&self) -> String {
        format!("00-{:032x}-{:016x}-{:02x}", self.trace, self.span, u8::from(self.sampled))
    }
}

/// The trace context a new saga keeps: the caller's (`traceparent`, when valid), else a new
/// trace when this host exports traces, else none.
pub fn context_for(traceparent: Option<&str>) -> Option<String> {
    match traceparent.and_then(Context::parse) {
        Some(c) => Some(c.header()),
        None if enabled() => Some(Context::root().header()),
        None => None,
    }
}

/// The `traceparent` of a command: the saga's trace, at the attempt's span (whose id is
/// derived from the command's correlation id, so whichever host ends the attempt writes the
/// same span).
pub fn command_context(saga_trace: Option<&str>, correlation_id: &str) -> Option<String> {
    saga_trace.and_then(Context::parse).map(|c| c.at(span_id(correlation_id)).header())
}

/// The span id of the thing named `seed` (a saga's id with a suffix, a correlation id): the
/// same on every host and every build (the first 8 bytes of its SHA-256), never zero.
pub fn span_id(seed: &str) -> u64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(seed.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 has 32 bytes")).max(1)
}

/// The span id of a saga's own span.
pub fn saga_span(saga_id: &str) -> u64 {
    span_id(&format!("{saga_id}#saga"))
}

/// A fresh span id (spans that happen once, in one process: a worker's handling).
pub fn random_span() -> u64 {
    (random_u128() as u64).max(1)
}

fn random_u128() -> u128 {
    use std::collections::hash_map::RandomState;
    use std::hash::BuildHasher;
    use std::sync::atomic::AtomicU64;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // Read once: `process::id` is a system call, and a saga asks for a few spans per step.
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    let a = RandomState::new().hash_one((n, now, *PID.get_or_init(std::process::id)));
    let b = RandomState::new().hash_one((a, n));
    (u128::from(a) << 64 | u128::from(b)).max(1)
}

/// A span to export: what, when, under which parent.
pub struct Span {
    pub name: String,
    pub kind: SpanKind,
    /// Its trace and its own span id.
    pub context: Context,
    /// The parent span (0: none).
    pub parent: u64,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<KeyValue>,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// A time in milliseconds since the epoch, as the record keeps it.
pub fn at_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Queue `span` for export (nothing when tracing is off; dropped and counted when the queue
/// is full).
pub fn emit(span: Span) {
    if !enabled() || !span.context.sampled {
        return;
    }
    let Some(tx) = QUEUE_TX.get() else { return };
    let data = SpanData {
        span_context: SpanContext::new(
            TraceId::from_bytes(span.context.trace.to_be_bytes()),
            SpanId::from_bytes(span.context.span.to_be_bytes()),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: SpanId::from_bytes(span.parent.to_be_bytes()),
        parent_span_is_remote: false,
        span_kind: span.kind,
        name: Cow::Owned(span.name),
        start_time: span.start,
        end_time: span.end.max(span.start),
        attributes: span.attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: match span.error {
            Some(description) => Status::Error { description: Cow::Owned(description) },
            None => Status::Unset,
        },
        instrumentation_scope: scope().clone(),
    };
    if let Err(TrySendError::Full(_)) = tx.try_send(Msg::Span(Box::new(data))) {
        super::metrics::spans_dropped("queue_full", 1);
    }
}

fn scope() -> &'static InstrumentationScope {
    static SCOPE: OnceLock<InstrumentationScope> = OnceLock::new();
    SCOPE.get_or_init(|| InstrumentationScope::builder("baton").with_version(env!("CARGO_PKG_VERSION")).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_round_trip_and_bad_ones_are_refused() {
        let text = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let c = Context::parse(text).unwrap();
        assert_eq!(c.header(), text);
        assert_eq!(c.at(7).header(), "00-0af7651916cd43dd8448eb211c80319c-0000000000000007-01");
        for bad in [
            "",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
            "00-zzf7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            assert_eq!(Context::parse(bad), None, "{bad:?}");
        }
        assert!(!Context::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00").unwrap().sampled);
    }

    #[test]
    fn span_ids_are_the_same_everywhere_and_never_zero() {
        assert_eq!(span_id("o-1/charge/forward/1"), span_id("o-1/charge/forward/1"));
        assert_ne!(span_id("o-1/charge/forward/1"), span_id("o-1/charge/forward/2"));
        assert_ne!(Context::root().trace, Context::root().trace);
        assert_ne!(random_span(), 0);
    }

    #[test]
    fn the_endpoint_gets_the_traces_path_once() {
        assert_eq!(traces_url("http://127.0.0.1:4318"), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(traces_url("http://127.0.0.1:4318/"), "http://127.0.0.1:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/v1/traces"), "http://c:4318/v1/traces");
    }
}
