//! Connecting to Redis, shared by the Redis store and the Redis transports.

use std::time::Duration;

use anyhow::Context as _;
use redis::aio::ConnectionManager;

/// How long the first connection may take before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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
    let con = client.get_connection_manager().await.with_context(unreachable)?;
    Ok((client, con))
}
