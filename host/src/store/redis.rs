//! A [`SagaStore`] in Redis, shared by every host of a distributed deployment.
//!
//! Keys, all under a configurable prefix so that several deployments (or tests) share one
//! Redis:
//! - `<p>:saga:<id>`: hash with `data` (the record as JSON), `rev` and `status`.
//! - `<p>:status:<status>`: sorted set of ids scored by creation time, for `list` and for
//!   finding unfinished sagas after a crash.
//! - `<p>:all`: sorted set of every id, scored by creation time.
//! - `<p>:timers`: sorted set of the ids of sagas waiting on a timer, scored by its due time,
//!   so the sweeper finds timers whose host died with one range query.
//! - `<p>:history:<id>`: list of the saga's history entries (JSON), oldest first.
//! - `<p>:events`: the lifecycle stream, capped (`MAXLEN ~`): an entry whenever a saga's
//!   status changes (it starts, begins compensating, ends) with the saga id, the new status
//!   and the history entries of that transition, for observers. Step-by-step detail is in
//!   the history.
//! - `<p>:definition:<hash>`: the text of a workflow definition sagas started with (kept:
//!   a few KiB per version of a workflow).
//! - `<p>:outcomes:<saga>`: hash of the saga's recorded terminal outcomes (JSON), field
//!   `<command> <idempotency key>`, written with `HSETNX` (the first record wins).
//! - `<p>:expiry`: sorted set of finished sagas scored by `expires_at`, for
//!   [`SagaStore::purge`]. A finished saga's hash, history and outcomes also get that time as
//!   their Redis expiry (`PEXPIREAT`), so Redis frees them even if no host purges.
//!
//! # Atomic transitions, and the outbox
//!
//! `create` and `commit` run one Lua script over the whole batch. For each transition it
//! checks the revision, writes the record and indexes, appends the history, adds the
//! lifecycle entry and, with [`RedisStore::with_outbox`], appends the transition's commands to
//! the streams the transport reads them from, under the entry field `event` (the transport
//! gives the store an [`OutboxEncoder`] that names the stream and encodes the command, so
//! the store knows nothing of the bus). Redis runs a script without interleaving anything else, so a transition and
//! the commands it emits are committed together or not at all: no crash between "saved" and
//! "sent" can lose a command, and two orchestrators can never both commit the same revision.
//! One round trip carries the batch.
//!
//! The scripts compute keys from the prefix, so they assume one Redis (not a cluster), as
//! the rest of the Redis mode does.

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};

use super::{Committed, Created, SagaStore, StoreError, Transition};
use crate::model::{HistoryEntry, Saga, SagaStatus};
use crate::protocol::{CommandMessage, Outcome};

/// What the outbox writes: a command, or a sub-saga's reply.
pub enum Outgoing<'a> {
    Command(&'a CommandMessage),
    Reply(&'a super::Reply),
}

/// How the outbox writes a message: the stream to append it to and the entry's `event`
/// field. Given by the transport that reads those streams.
pub type OutboxEncoder = std::sync::Arc<dyn Fn(Outgoing<'_>) -> (String, String) + Send + Sync>;

/// Applies a batch of transitions. ARGV: the prefix, the `all`, `timers` and `events` keys,
/// the lifecycle stream length (0: none), the number of transitions, then for each: mode
/// (`c` create, `u` update), id, record, expected revision, new revision, status, creation
/// time, timer due time (`''`: none), the saga's key, its history key, the key of its new
/// status' index, when it expires (`''`: never, or not finished), its outcomes key, the
/// number of history entries and the entries, the number of commands and (stream, event)
/// pairs. Keys are built by the caller: string work is cheaper in Rust than
/// in Lua, and this script runs for every step of every saga.
///
/// Returns one value per transition: for an update 1 (done), 0 (revision conflict) or -1
/// (no such saga); for a create 1 (done) or the existing record.
const APPLY: &str = r#"
local p, all_key, timers_key, events_key = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local maxlen = tonumber(ARGV[5])
local n = tonumber(ARGV[6])
local i = 7
local out = {}
for t = 1, n do
  local mode, id, data, expected, rev, status, created, due, key, history_key, status_key =
    ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4], ARGV[i+5], ARGV[i+6], ARGV[i+7],
    ARGV[i+8], ARGV[i+9], ARGV[i+10]
  local expires, outcomes_key = ARGV[i+11], ARGV[i+12]
  local nh = tonumber(ARGV[i+13])
  local h0 = i + 14
  local nc = tonumber(ARGV[h0 + nh])
  local c0 = h0 + nh + 1
  i = c0 + 2 * nc
  local result = nil
  local old_status = nil
  if mode == 'c' then
    result = redis.call('HGET', key, 'data') or nil
  else
    local cur = redis.call('HMGET', key, 'rev', 'status')
    if not cur[1] then result = -1
    elseif cur[1] ~= expected then result = 0
    else old_status = cur[2] end
  end
  if result == nil then
    redis.call('HSET', key, 'data', data, 'rev', rev, 'status', status)
    if mode == 'c' then redis.call('ZADD', all_key, created, id) end
    if due == '' then
      redis.call('ZREM', timers_key, id)
    else
      redis.call('ZADD', timers_key, due, id)
    end
    if nh > 0 then
      redis.call('RPUSH', history_key, unpack(ARGV, h0, h0 + nh - 1))
    end
    -- A change of status is a lifecycle event: the index moves, observers hear of it.
    if old_status ~= status then
      if old_status then redis.call('ZREM', p .. ':status:' .. old_status, id) end
      redis.call('ZADD', status_key, created, id)
      if expires ~= '' then
        redis.call('ZADD', p .. ':expiry', expires, id)
        redis.call('PEXPIREAT', key, expires)
        redis.call('PEXPIREAT', history_key, expires)
        redis.call('PEXPIREAT', outcomes_key, expires)
      end
      if maxlen > 0 then
        local entries = {}
        for h = 0, nh - 1 do entries[h + 1] = ARGV[h0 + h] end
        redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*',
          'saga', id, 'status', status, 'revision', rev, 'history', '[' .. table.concat(entries, ',') .. ']')
      end
    end
    for c = 0, nc - 1 do
      redis.call('XADD', ARGV[c0 + 2 * c], '*', 'event', ARGV[c0 + 2 * c + 1])
    end
    result = 1
  end
  out[t] = result
end
return out
"#;

/// One page of the timer index (KEYS[1]) after the entry (ARGV[1] id, ARGV[2] due), up to
/// ARGV[3] due, at most ARGV[4] entries, as id, due pairs. Equal due times are ordered by id
/// (a sorted set's order), so paging by rank from the last entry seen skips nothing; when that
/// entry has left the index meanwhile, the page starts after its due time.
const DUE_PAGE: &str = r#"
local key, after_id, after_due, before, limit = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
if after_id == '' then
  return redis.call('ZRANGEBYSCORE', key, '-inf', before, 'WITHSCORES', 'LIMIT', 0, limit)
end
local rank = redis.call('ZRANK', key, after_id)
local score = redis.call('ZSCORE', key, after_id)
if rank and tonumber(score) == after_due then
  return redis.call('ZRANGE', key, rank + 1, rank + limit, 'WITHSCORES')
end
return redis.call('ZRANGEBYSCORE', key, '(' .. after_due, before, 'WITHSCORES', 'LIMIT', 0, limit)
"#;

/// Deletes up to ARGV[3] sagas (of prefix ARGV[1]) whose expiry (ARGV[2], ms) has come: their
/// hash, history and outcomes, and their entries in every index. Returns how many.
const PURGE: &str = r#"
local p, now, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local ids = redis.call('ZRANGEBYSCORE', p .. ':expiry', '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(ids) do
  redis.call('DEL', p .. ':saga:' .. id, p .. ':history:' .. id, p .. ':outcomes:' .. id)
  redis.call('ZREM', p .. ':all', id)
  redis.call('ZREM', p .. ':timers', id)
  redis.call('ZREM', p .. ':expiry', id)
  for _, s in ipairs({'completed', 'compensated', 'failed', 'running', 'compensating'}) do
    redis.call('ZREM', p .. ':status:' .. s, id)
  end
end
return #ids
"#;

/// Records outcomes, the first record of each winning: ARGV[1] the lifetime (ms) of records
/// whose saga is not in this store, then (hash, field, outcome, saga key) for each. A record
/// lives as long as its saga: its hash takes the saga's expiry (none while it runs).
const RECORD: &str = r#"
local orphan_ttl = ARGV[1]
for i = 2, #ARGV, 4 do
  local hash, field, data, saga_key = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3]
  redis.call('HSETNX', hash, field, data)
  local ttl = redis.call('PTTL', saga_key)
  if ttl > 0 then
    redis.call('PEXPIRE', hash, ttl)
  elseif ttl == -2 and redis.call('PTTL', hash) == -1 then
    redis.call('PEXPIRE', hash, orphan_ttl)
  end
end
return 0
"#;

/// How long an outcome record is kept when this store holds no saga for it (the saga was
/// deleted, or the command came from another deployment): long past any redelivery.
pub const ORPHAN_OUTCOME_TTL: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

/// Entries the lifecycle stream keeps (approximately: Redis trims in whole nodes).
pub const DEFAULT_EVENTS_MAXLEN: usize = 10_000;

/// See the module documentation. Cheap to clone (the connection is multiplexed and
/// reconnects by itself).
#[derive(Clone)]
pub struct RedisStore {
    con: ConnectionManager,
    prefix: String,
    apply: Script,
    /// The other scripts, hashed once ([`DUE_PAGE`], [`PURGE`], [`RECORD`]).
    due_page: Script,
    purge: Script,
    record: Script,
    /// When set, the script appends commands to their streams (the Streams transport).
    outbox: Option<OutboxEncoder>,
    /// "Redis at redis://host:port", password redacted, for messages.
    location: String,
    events_maxlen: usize,
}

/// `url` with any password replaced by `***`, for logs and messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split_once(':').map_or("", |(u, _)| u);
            let shown = if userinfo.contains(':') { format!("{user}:***") } else { "***".to_owned() };
            format!("{}{shown}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &str) -> Result<T, StoreError> {
    serde_json::from_str(bytes).map_err(|e| StoreError::corrupt("in Redis", e))
}

impl RedisStore {
    /// Connect to `url` and keep every key under `prefix` (e.g. `baton`).
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<RedisStore> {
        let (_, con) = crate::redis_conn::connect(url).await?;
        Ok(RedisStore {
            con,
            prefix: prefix.to_owned(),
            apply: Script::new(APPLY),
            due_page: Script::new(DUE_PAGE),
            purge: Script::new(PURGE),
            record: Script::new(RECORD),
            outbox: None,
            location: format!("Redis at {}", redact(url)),
            events_maxlen: DEFAULT_EVENTS_MAXLEN,
        })
    }

    /// A failed Redis call as a retryable error that says which Redis did not answer.
    fn unavailable(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable(format!("{} did not answer ({e})", self.location))
    }

    /// Append each transition's commands to the streams `encoder` names, in the
    /// transition's own script (see the module documentation). Use with the Redis Streams
    /// transport on the same Redis and prefix
    /// ([`crate::bus::redis_streams::outbox_encoder`]).
    pub fn with_outbox(mut self, encoder: OutboxEncoder) -> RedisStore {
        self.outbox = Some(encoder);
        self
    }

    /// Cap the lifecycle stream at about `maxlen` entries; 0 writes none.
    pub fn with_events_maxlen(mut self, maxlen: usize) -> RedisStore {
        self.events_maxlen = maxlen;
        self
    }

    fn saga_key(&self, id: &str) -> String {
        format!("{}:saga:{id}", self.prefix)
    }

    /// The hash of a saga's outcome records.
    fn outcomes_key(&self, saga: &str) -> String {
        format!("{}:outcomes:{saga}", self.prefix)
    }

    /// Where the outcome of `command` under `key` is kept: (hash, field).
    fn outcome_slot(&self, command: &str, key: &str) -> (String, String) {
        (self.outcomes_key(super::saga_of(key)), format!("{command} {key}"))
    }

    /// Run [`APPLY`] over `(mode, transition)` pairs.
    async fn apply(&self, batch: &[(&str, &Transition)]) -> Result<Vec<redis::Value>, StoreError> {
        let mut invocation = self.apply.prepare_invoke();
        let p = &self.prefix;
        invocation
            .arg(p)
            .arg(format!("{p}:all"))
            .arg(format!("{p}:timers"))
            .arg(format!("{p}:events"))
            .arg(self.events_maxlen)
            .arg(batch.len());
        for (mode, t) in batch {
            let saga = &*t.saga;
            let data = serde_json::to_string(saga).map_err(|e| self.unavailable(e))?;
            invocation
                .arg(*mode)
                .arg(&saga.id)
                .arg(data)
                .arg(t.expected_revision)
                .arg(saga.revision)
                .arg(saga.status.as_str())
                .arg(saga.created_at)
                .arg(saga.timer_due().map(|d| d.to_string()).unwrap_or_default())
                .arg(self.saga_key(&saga.id))
                .arg(format!("{p}:history:{}", saga.id))
                .arg(format!("{p}:status:{}", saga.status.as_str()))
                .arg(saga.expires_at.map(|at| at.to_string()).unwrap_or_default())
                .arg(self.outcomes_key(&saga.id))
                .arg(t.history.len());
            for entry in &t.history {
                invocation.arg(serde_json::to_string(entry).map_err(|e| self.unavailable(e))?);
            }
            match &self.outbox {
                Some(encode) => {
                    invocation.arg(t.commands.len() + t.replies.len());
                    for c in &t.commands {
                        let (stream, event) = encode(Outgoing::Command(c));
                        invocation.arg(stream).arg(event);
                    }
                    for r in &t.replies {
                        let (stream, event) = encode(Outgoing::Reply(r));
                        invocation.arg(stream).arg(event);
                    }
                }
                None => {
                    invocation.arg(0);
                }
            }
        }
        let out: Vec<redis::Value> =
            invocation.invoke_async(&mut self.con.clone()).await.map_err(|e| self.unavailable(e))?;
        if out.len() != batch.len() {
            return Err(StoreError::Unavailable(format!("the apply script answered {} of {}", out.len(), batch.len())));
        }
        Ok(out)
    }
}

#[async_trait]
impl SagaStore for RedisStore {
    async fn create(&self, start: &Transition) -> Result<Created, StoreError> {
        let out = self.apply(&[("c", start)]).await?;
        match &out[0] {
            redis::Value::Int(1) => Ok(Created::New),
            other => {
                let data: String = redis::from_redis_value_ref(other).map_err(|e| self.unavailable(e))?;
                Ok(Created::Existing(Box::new(decode(&data)?)))
            }
        }
    }

    async fn load(&self, id: &str) -> Result<Option<Saga>, StoreError> {
        let data: Option<String> =
            self.con.clone().hget(self.saga_key(id), "data").await.map_err(|e| self.unavailable(e))?;
        data.map(|d| decode(&d)).transpose()
    }

    async fn load_many(&self, ids: &[&str]) -> Result<Vec<Option<Saga>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hget(self.saga_key(id), "data");
        }
        let records: Vec<Option<String>> =
            pipe.query_async(&mut self.con.clone()).await.map_err(|e| self.unavailable(e))?;
        records.into_iter().map(|d| d.map(|d| decode(&d)).transpose()).collect()
    }

    async fn commit(&self, batch: &[Transition]) -> Result<Vec<Committed>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let pairs: Vec<(&str, &Transition)> = batch.iter().map(|t| ("u", t)).collect();
        let out = self.apply(&pairs).await?;
        Ok(out
            .iter()
            .map(|v| match v {
                redis::Value::Int(1) => Committed::Ok,
                redis::Value::Int(0) => Committed::Conflict,
                _ => Committed::NotFound,
            })
            .collect())
    }

    fn dispatches_commands(&self) -> bool {
        self.outbox.is_some()
    }

    fn system(&self) -> &'static str {
        "redis"
    }

    async fn count(&self, status: SagaStatus) -> Result<u64, StoreError> {
        let index = format!("{}:status:{}", self.prefix, status.as_str());
        let mut con = self.con.clone();
        con.zcard(&index).await.map_err(|e| self.unavailable(e))
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
        let ids: Vec<String> = con.zrevrange(&index, 0, stop).await.map_err(|e| self.unavailable(e))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // One round trip for all the records.
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hget(self.saga_key(id), "data");
        }
        let records: Vec<Option<String>> = pipe.query_async(&mut con).await.map_err(|e| self.unavailable(e))?;
        let mut out: Vec<Saga> = records.into_iter().flatten().map(|d| decode(&d)).collect::<Result<_, _>>()?;
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    async fn history(&self, id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let key = format!("{}:history:{id}", self.prefix);
        let entries: Vec<String> = self.con.clone().lrange(key, 0, -1).await.map_err(|e| self.unavailable(e))?;
        entries.iter().map(|e| decode(e)).collect()
    }

    async fn due_timers(
        &self,
        after: Option<(u64, &str)>,
        before: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        let key = format!("{}:timers", self.prefix);
        let (after_due, after_id) = after.map_or((0, ""), |(d, id)| (d, id));
        let page: Vec<(String, u64)> = self
            .due_page
            .key(key)
            .arg(after_id)
            .arg(after_due)
            .arg(before)
            .arg(limit)
            .invoke_async(&mut self.con.clone())
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(page.into_iter().filter(|(_, due)| *due <= before).map(|(id, due)| (due, id)).collect())
    }

    async fn purge(&self, now: u64, limit: usize) -> Result<usize, StoreError> {
        let purged: usize = self
            .purge
            .arg(&self.prefix)
            .arg(now)
            .arg(limit)
            .invoke_async(&mut self.con.clone())
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(purged)
    }

    async fn outcome(&self, command: &str, idempotency_key: &str) -> Result<Option<Outcome>, StoreError> {
        Ok(self.outcomes(&[(command, idempotency_key)]).await?.pop().flatten())
    }

    async fn outcomes(&self, keys: &[(&str, &str)]) -> Result<Vec<Option<Outcome>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (command, key) in keys {
            let (hash, field) = self.outcome_slot(command, key);
            pipe.hget(hash, field);
        }
        let data: Vec<Option<String>> =
            pipe.query_async(&mut self.con.clone()).await.map_err(|e| self.unavailable(e))?;
        data.into_iter().map(|d| d.map(|d| decode(&d)).transpose()).collect()
    }

    async fn record_outcomes(&self, records: &[(&str, &str, &Outcome)]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut invocation = self.record.prepare_invoke();
        invocation.arg(ORPHAN_OUTCOME_TTL.as_millis() as u64);
        for (command, key, outcome) in records {
            let (hash, field) = self.outcome_slot(command, key);
            let data = serde_json::to_string(outcome).map_err(|e| self.unavailable(e))?;
            invocation.arg(hash).arg(field).arg(data).arg(self.saga_key(super::saga_of(key)));
        }
        invocation.invoke_async::<()>(&mut self.con.clone()).await.map_err(|e| self.unavailable(e))
    }

    async fn put_definition(&self, hash: &str, text: &str) -> Result<(), StoreError> {
        let key = format!("{}:definition:{hash}", self.prefix);
        redis::cmd("SET")
            .arg(key)
            .arg(text)
            .arg("NX")
            .query_async::<()>(&mut self.con.clone())
            .await
            .map_err(|e| self.unavailable(e))
    }

    async fn definition(&self, hash: &str) -> Result<Option<String>, StoreError> {
        let key = format!("{}:definition:{hash}", self.prefix);
        self.con.clone().get(key).await.map_err(|e| self.unavailable(e))
    }

    async fn forget_outcomes(&self, keys: &[(&str, &str)]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (command, key) in keys {
            let (hash, field) = self.outcome_slot(command, key);
            pipe.hdel(hash, field).ignore();
        }
        pipe.query_async::<()>(&mut self.con.clone()).await.map_err(|e| self.unavailable(e))
    }

    async fn record_outcome(&self, command: &str, idempotency_key: &str, outcome: &Outcome) -> Result<(), StoreError> {
        self.record_outcomes(&[(command, idempotency_key, outcome)]).await
    }

    /// `PING` on the shared connection.
    async fn ping(&self) -> Result<(), StoreError> {
        redis::cmd("PING").query_async::<()>(&mut self.con.clone()).await.map_err(|e| self.unavailable(e))
    }
}
