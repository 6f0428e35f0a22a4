//! A [`SagaStore`] in Redis, shared by every host of a distributed deployment.
//!
//! Keys, all under a configurable prefix so that several deployments (or tests) share one
//! Redis:
//! - `<p>:saga:<id>`: hash with `data` (the record as JSON), `rev` and `status`.
//! - `<p>:status:<status>`: sorted set of ids scored by creation time, for `list` and for
//!   finding unfinished sagas after a crash.
//! - `<p>:all`: sorted set of every id, scored by creation time.
//! - `<p>:outcome:<command>:<key>`: a recorded terminal outcome (JSON), written with `SET NX`.
//!
//! `create` and `commit` are Lua scripts, so the revision check, the write and the index
//! update happen atomically on the server: two orchestrators can never both commit the same
//! revision. The scripts compute index keys from the prefix, so they assume one Redis (not a
//! cluster), as the rest of the Redis mode does.

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};

use super::{Created, SagaStore, StoreError};
use crate::orchestrator::saga::{Saga, SagaStatus};
use crate::protocol::Outcome;

/// Creates the saga unless its id exists; returns the stored record when it does.
const CREATE: &str = r#"
local existing = redis.call('HGET', KEYS[1], 'data')
if existing then return existing end
redis.call('HSET', KEYS[1], 'data', ARGV[1], 'rev', ARGV[2], 'status', ARGV[3])
redis.call('ZADD', ARGV[5] .. ':status:' .. ARGV[3], ARGV[4], ARGV[6])
redis.call('ZADD', ARGV[5] .. ':all', ARGV[4], ARGV[6])
return false
"#;

/// Replaces the saga if its revision is still the expected one. Returns 1 on success, 0 on a
/// conflict, -1 when the saga does not exist.
const COMMIT: &str = r#"
local rev = redis.call('HGET', KEYS[1], 'rev')
if not rev then return -1 end
if rev ~= ARGV[2] then return 0 end
local old = redis.call('HGET', KEYS[1], 'status')
redis.call('HSET', KEYS[1], 'data', ARGV[1], 'rev', ARGV[3], 'status', ARGV[4])
if old ~= ARGV[4] then
  redis.call('ZREM', ARGV[6] .. ':status:' .. old, ARGV[7])
  redis.call('ZADD', ARGV[6] .. ':status:' .. ARGV[4], ARGV[5], ARGV[7])
end
return 1
"#;

/// See the module documentation. Cheap to clone (the connection is multiplexed and
/// reconnects by itself).
#[derive(Clone)]
pub struct RedisStore {
    con: ConnectionManager,
    prefix: String,
    create: Script,
    commit: Script,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &str) -> Result<T, StoreError> {
    serde_json::from_str(bytes).map_err(|e| StoreError::Unavailable(format!("corrupt record: {e}")))
}

impl RedisStore {
    /// Connect to `url` and keep every key under `prefix` (e.g. `baton`).
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<RedisStore> {
        let (_, con) = crate::redis_conn::connect(url).await?;
        Ok(RedisStore { con, prefix: prefix.to_owned(), create: Script::new(CREATE), commit: Script::new(COMMIT) })
    }

    fn saga_key(&self, id: &str) -> String {
        format!("{}:saga:{id}", self.prefix)
    }

    fn outcome_key(&self, command: &str, key: &str) -> String {
        format!("{}:outcome:{command}:{key}", self.prefix)
    }
}

#[async_trait]
impl SagaStore for RedisStore {
    async fn create(&self, saga: &Saga) -> Result<Created, StoreError> {
        let data = serde_json::to_string(saga).map_err(unavailable)?;
        let existing: Option<String> = self
            .create
            .key(self.saga_key(&saga.id))
            .arg(data)
            .arg(saga.revision)
            .arg(saga.status.as_str())
            .arg(saga.created_at)
            .arg(&self.prefix)
            .arg(&saga.id)
            .invoke_async(&mut self.con.clone())
            .await
            .map_err(unavailable)?;
        match existing {
            Some(data) => Ok(Created::Existing(Box::new(decode(&data)?))),
            None => Ok(Created::New),
        }
    }

    async fn load(&self, id: &str) -> Result<Option<Saga>, StoreError> {
        let data: Option<String> = self.con.clone().hget(self.saga_key(id), "data").await.map_err(unavailable)?;
        data.map(|d| decode(&d)).transpose()
    }

    async fn commit(&self, saga: &Saga, expected_revision: u64) -> Result<(), StoreError> {
        let data = serde_json::to_string(saga).map_err(unavailable)?;
        let result: i64 = self
            .commit
            .key(self.saga_key(&saga.id))
            .arg(data)
            .arg(expected_revision.to_string())
            .arg(saga.revision.to_string())
            .arg(saga.status.as_str())
            .arg(saga.created_at)
            .arg(&self.prefix)
            .arg(&saga.id)
            .invoke_async(&mut self.con.clone())
            .await
            .map_err(unavailable)?;
        match result {
            1 => Ok(()),
            0 => Err(StoreError::Conflict { id: saga.id.clone(), expected: expected_revision }),
            _ => Err(StoreError::NotFound(saga.id.clone())),
        }
    }

    async fn list(&self, status: Option<SagaStatus>, limit: usize) -> Result<Vec<Saga>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let index = match status {
            Some(s) => format!("{}:status:{}", self.prefix, s.as_str()),
            None => format!("{}:all", self.prefix),
        };
        let mut con = self.con.clone();
        let stop = isize::try_from(limit).unwrap_or(isize::MAX) - 1;
        let ids: Vec<String> = con.zrevrange(&index, 0, stop).await.map_err(unavailable)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // One round trip for all the records.
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hget(self.saga_key(id), "data");
        }
        let records: Vec<Option<String>> = pipe.query_async(&mut con).await.map_err(unavailable)?;
        let mut out: Vec<Saga> = records.into_iter().flatten().map(|d| decode(&d)).collect::<Result<_, _>>()?;
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    async fn outcome(&self, command: &str, idempotency_key: &str) -> Result<Option<Outcome>, StoreError> {
        let data: Option<String> =
            self.con.clone().get(self.outcome_key(command, idempotency_key)).await.map_err(unavailable)?;
        data.map(|d| decode(&d)).transpose()
    }

    async fn record_outcome(&self, command: &str, idempotency_key: &str, outcome: &Outcome) -> Result<(), StoreError> {
        let data = serde_json::to_string(outcome).map_err(unavailable)?;
        // NX: the first record wins.
        let _: Option<String> = redis::cmd("SET")
            .arg(self.outcome_key(command, idempotency_key))
            .arg(data)
            .arg("NX")
            .query_async(&mut self.con.clone())
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
