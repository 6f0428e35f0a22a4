//! What a worker costs in each language: Rust (`testkit.echo`), Python (`probe.echo`, of
//! `tests/polyglot/probe.py`) and JavaScript (`probe.echo`, of `tests/polyglot/probe.js`), all
//! trivial handlers of a small JSON object, so what is measured is the language's runtime.
//!
//! - `polyglot/invoke/<lang>`: the per-command overhead: a fresh instance from the pool, the
//!   `handle` call, JSON in and out (`runtime/invoke_echo` of the `runtime` bench, per
//!   language).
//! - `polyglot/load_cached/<lang>`: loading the plugin when its compiled code is in the
//!   compile cache (a host's restart): read, hash, deserialize, `describe`.
//! - `polyglot/load_cold/<lang>`: loading it with an empty cache: the compile (once per build
//!   of a plugin, on the first host that sees it).
//!
//! The Python and JS components are built first when no build of their sources is kept (as
//! the tests build them; componentize-py and componentize-js are installed under `target/`).
//! Run: `cargo bench -p baton-tests --bench polyglot` (the cold loads take a few minutes:
//! ten compiles of each component).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use baton::protocol::{CommandMessage, Meta, Outcome};
use baton::runtime::{Runtime, RuntimeConfig};
use baton_tests::{js, python};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};

/// The three plugins: (language, component, command, payload).
fn plugins() -> Vec<(&'static str, PathBuf, &'static str, Value)> {
    vec![
        ("rust", Path::new(baton_tests::PLUGINS_DIR).join("testkit.wasm"), "testkit.echo", json!({"name": "Ada"})),
        ("python", python::probe_component(), "probe.echo", json!({"name": "Ada"})),
        ("js", js::probe_component(), "probe.echo", json!({"name": "Ada"})),
    ]
}

fn command(name: &str, payload: Value) -> CommandMessage {
    CommandMessage {
        name: name.into(),
        payload,
        meta: Meta {
            transaction_id: "t".into(),
            correlation_id: "t/s/forward/1".into(),
            idempotency_key: "t/s/forward".into(),
            step: "s".into(),
            attempt: 1,
            traceparent: None,
        },
        timeout_ms: 30_000,
        deadline_ms: 0,
        start_by_ms: 0,
    }
}

fn runtime(cache: &Path) -> Runtime {
    Runtime::new(RuntimeConfig { cache_dir: Some(cache.to_owned()), ..RuntimeConfig::default() }).unwrap()
}

fn polyglot(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let plugins = plugins();
    let cache = baton_tests::cache_dir();

    let mut group = c.benchmark_group("polyglot/invoke");
    for (lang, wasm, name, payload) in &plugins {
        let runtime = runtime(&cache);
        rt.block_on(runtime.load_file(wasm)).unwrap();
        let cmd = command(name, payload.clone());
        group.bench_function(BenchmarkId::from_parameter(lang), |b| {
            b.iter(|| {
                let out = rt.block_on(runtime.invoke(&cmd, 0));
                assert!(matches!(out, Outcome::Ok(_)), "{out:?}");
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("polyglot/load_cached");
    for (lang, wasm, _, _) in &plugins {
        group.bench_function(BenchmarkId::from_parameter(lang), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let runtime = runtime(&cache);
                    let started = Instant::now();
                    rt.block_on(runtime.load_file(wasm)).unwrap();
                    spent += started.elapsed();
                }
                spent
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("polyglot/load_cold");
    group.sample_size(10).measurement_time(Duration::from_secs(1));
    for (lang, wasm, _, _) in &plugins {
        group.bench_function(BenchmarkId::from_parameter(lang), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let empty = tempfile::tempdir().unwrap();
                    let runtime = runtime(empty.path());
                    let started = Instant::now();
                    rt.block_on(runtime.load_file(wasm)).unwrap();
                    spent += started.elapsed();
                }
                spent
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = polyglot
}
criterion_main!(benches);
