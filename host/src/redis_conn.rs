//! Connecting to Redis, shared by the Redis store and the Redis transports.

use std::time::Duration;

use anyhow::Context as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// How long the first connection may take before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one command may wait for its answer before it fails as "unavailable". redis-rs
/// defaults to 500 ms, which a loaded machine exceeds in normal operation: a batch script on
/// a Redis with `appendfsync always`, while other processes share two cores, took longer, and
/// `POST /v1/sagas` answered 503 with the store up. A Redis that is really gone is noticed
/// sooner than this anyway: its connection drops, and that fails every command at once.
pub(crate) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// A client and a reconnecting connection to `url`. One direct attempt comes first, so a
/// wrong URL or a Redis that is down fails in seconds with a message that says so; the
/// manager then reconnects by itself (with backoff) whenever the connection drops later.
pub(crate) async fn connect(url: &str) -> anyhow::Result<(redis::Client, ConnectionManager)> {
    let client = redis::Client::open(url).with_context(|| format!("{url:?} is not a Redis URL (redis://host:port)"))?;
    let unreachable = || format!("cannot connect to Redis at {url}: is it running? (redis-server --port 6379)");
    match tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(anyhow::Error::new(e).context(unreachable())),
        Err(_) => anyhow::bail!("{}: no answer within {CONNECT_TIMEOUT:?}", unreachable()),
    }
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        // Reconnect attempts back off up to a second apart: a Redis that restarts is found
        // again within about a second of coming back.
        .set_max_delay(Duration::from_secs(1));
    let con = client.get_connection_manager_with_config(config).await.with_context(unreachable)?;
    Ok((client, con))
}
