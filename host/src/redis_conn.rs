//! Connecting to Redis, shared by the Redis store and the Redis transports.
//!
//! A URL is `redis://[user:password@]host:port[/db]`, or `rediss://...` for TLS. TLS checks
//! the server's certificate against Mozilla's roots (compiled in), or against the CA given
//! with [`trust_ca`] (`baton serve --redis-ca`) for a server with a private or self-signed
//! certificate. `rediss://...#insecure` (the redis crate's convention) skips the check.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::store::redis::redact;

/// How long the first connection may take before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one command may wait for its answer before it fails as "unavailable". redis-rs
/// defaults to 500 ms, which a loaded machine exceeds in normal operation: a batch script on
/// a Redis with `appendfsync always`, while other processes share two cores, took longer, and
/// `POST /v1/sagas` answered 503 with the store up. A Redis that is really gone is noticed
/// sooner than this anyway: its connection drops, and that fails every command at once.
pub(crate) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// The CA certificates (PEM) to check each TLS URL's server against, by URL.
///
/// Kept here, by URL, rather than passed to every `connect` (the store and both transports
/// take a URL), so that `--redis-ca` reaches each connection to that Redis and no other.
fn trusted() -> &'static Mutex<HashMap<String, Vec<u8>>> {
    static TRUSTED: OnceLock<Mutex<HashMap<String, Vec<u8>>>> = OnceLock::new();
    TRUSTED.get_or_init(Default::default)
}

/// Check the server at `url` (a `rediss://` URL) against the CA certificates in `pem`
/// instead of the built-in roots, from now on.
pub(crate) fn trust_ca(url: &str, pem: Vec<u8>) {
    trusted().lock().expect("trusted lock poisoned").insert(url.to_owned(), pem);
}

/// Whether `url` asks for TLS.
pub(crate) fn is_tls(url: &str) -> bool {
    url.starts_with("rediss://") || url.starts_with("valkeys://")
}

/// The client for `url`, with the CA [`trust_ca`] gave for it.
fn client(url: &str) -> anyhow::Result<redis::Client> {
    let shown = redact(url);
    let not_a_url =
        || format!("{shown:?} is not a Redis URL (redis://[user:password@]host:port[/db], or rediss:// for TLS)");
    if !is_tls(url) {
        return redis::Client::open(url).with_context(not_a_url);
    }
    // The redis crate's rustls has no crypto provider of its own; the first TLS connection
    // installs the process's (a second call finds it there).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ca = trusted().lock().expect("trusted lock poisoned").get(url).cloned();
    match ca {
        None => redis::Client::open(url).with_context(not_a_url),
        Some(pem) => {
            let certs = redis::TlsCertificates { client_tls: None, root_cert: Some(pem) };
            redis::Client::build_with_tls(url, certs)
                .with_context(|| format!("cannot use the CA certificate of --redis-ca for {shown} (is it PEM?)"))
        }
    }
}

/// Why the first connection to `url` failed, in words that say what to do.
fn explain(url: &str, e: &redis::RedisError) -> String {
    let shown = redact(url);
    let auth = e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"));
    if auth {
        return format!(
            "Redis at {shown} refused to let this host in: check the user and password in the URL (redis://user:password@host:port) and that the ACL user is `on`"
        );
    }
    let text = e.to_string().to_ascii_lowercase();
    if is_tls(url) && text.contains("certificate") {
        return format!(
            "cannot connect to Redis at {shown}: its TLS certificate is not trusted (or not for that host name); if a private CA signed it, pass that CA with --redis-ca PATH"
        );
    }
    if is_tls(url) && !e.is_connection_refusal() {
        return format!(
            "cannot connect to Redis at {shown} over TLS: is it running, and serving TLS on that port (redis-server --tls-port)?"
        );
    }
    format!("cannot connect to Redis at {shown}: is it running? (redis-server --port 6379)")
}

/// A client and a reconnecting connection to `url`. One direct attempt comes first, so a
/// wrong URL, a wrong password or a Redis that is down fails in seconds with a message that
/// says so; the manager then reconnects by itself (with backoff) whenever the connection
/// drops later. Messages show the URL with its password as `***`.
pub(crate) async fn connect(url: &str) -> anyhow::Result<(redis::Client, ConnectionManager)> {
    let client = client(url)?;
    let shown = redact(url);
    match tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            let why = explain(url, &e);
            return Err(anyhow::Error::new(e).context(why));
        }
        Err(_) => {
            let hint = if is_tls(url) { " (is it serving TLS on that port?)" } else { "" };
            anyhow::bail!("cannot connect to Redis at {shown}: no answer within {CONNECT_TIMEOUT:?}{hint}")
        }
    }
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        // Reconnect attempts back off up to a second apart: a Redis that restarts is found
        // again within about a second of coming back.
        .set_max_delay(Duration::from_secs(1));
    let con = client
        .get_connection_manager_with_config(config)
        .await
        .with_context(|| format!("cannot connect to Redis at {shown}"))?;
    Ok((client, con))
}
