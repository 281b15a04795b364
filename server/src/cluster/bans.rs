//! The ban set, shared through Redis: a ban issued on any node is enforced by every
//! node within a second, and survives their restarts.
//!
//! Schema (beside `matcher::store`'s):
//! - `lm:ban:{key}`: the ban as JSON, expiring when its strike is forgotten (the
//!   policy's memory after it was issued);
//! - `lm:bans`: the set of keys with a record, for loading them all;
//! - `lm:bans:lifted:{key}`: when the key's ban was last lifted (unix ms), kept as long
//!   as a record;
//! - `lm:bans:log`: a stream of changes (`op` "add" with the ban, "lift" with the
//!   key, or "mark" with the evidence a hub counted; `node`: who wrote it), capped at
//!   ~10,000 entries.
//!
//! Each node writes its own bans and lifts (issued by its hub or its operator), follows
//! the stream with a blocking read from the last id it saw, so a change reaches it in
//! milliseconds and none is missed across a reconnect, and loads every record at start
//! and every [`SYNC_EVERY`]. A lift deletes the record and writes its time in one
//! transaction, which tells the ways a ban can be missing from Redis apart: lifted
//! after it was issued (a lift this node missed, or one racing the sync), and it is
//! dropped here too; otherwise never written (a write that failed or was skipped) or
//! lost (Redis restarted empty), and the sync writes it back, strikes included. A
//! record still in Redis that this node lifted since is deleted again.
//!
//! Evidence (reports, viewers' flags) is only streamed: every node counts every mark
//! as it arrives, so reports against one address from users on different nodes add
//! up. Marks are not loaded at start; they last the report window anyway.

use crate::bans::{Ban, Bans, Change, Mark, unix_ms};
use crate::hub::HubHandle;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use redis::streams::{StreamReadOptions, StreamReadReply};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

const LOG: &str = "lm:bans:log";
const SET: &str = "lm:bans";
const LOG_CAP: usize = 10_000;
/// How often every record is loaded (and lost ones written back).
pub const SYNC_EVERY: Duration = Duration::from_secs(10);
/// How long a read of the change stream blocks in Redis.
const READ_BLOCK_MS: usize = 500;

fn record_key(key: IpAddr) -> String {
    format!("lm:ban:{key}")
}

fn lifted_key(key: IpAddr) -> String {
    format!("lm:bans:lifted:{key}")
}

/// Adds the commands that lift the ban on `key` at `at_ms` to `pipe` (make it atomic:
/// a sync must never see the record gone without the time of its lift).
fn unstore(pipe: &mut redis::Pipeline, key: IpAddr, at_ms: u64, memory: Duration) {
    pipe.del(record_key(key)).ignore().srem(SET, key.to_string()).ignore();
    pipe.cmd("SET").arg(lifted_key(key)).arg(at_ms).arg("PX").arg(memory.as_millis() as u64).ignore();
}

/// Starts the tasks that keep `bans` shared; after the first load (so a node that
/// starts enforces the bans in force before it accepts anyone).
pub async fn start(client: redis::Client, bans: Arc<Bans>, hub: HubHandle, node: String) -> anyhow::Result<()> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(Duration::from_secs(3)))
        .set_connection_timeout(Some(Duration::from_secs(2)));
    let mut con = ConnectionManager::new_with_config(client.clone(), config.clone()).await?;
    let last = last_id(&mut con).await?;
    load(&mut con, &bans).await?;
    let follower = ConnectionManager::new_with_config(client, config).await?;
    tokio::spawn(write(con.clone(), bans.clone(), hub.clone(), node.clone()));
    tokio::spawn(follow(follower, bans.clone(), hub.clone(), node, last));
    tokio::spawn(resync(con, bans, hub));
    Ok(())
}

/// The id of the stream's last entry ("0-0" when empty).
async fn last_id(con: &mut ConnectionManager) -> redis::RedisResult<String> {
    let last: redis::streams::StreamRangeReply = con.xrevrange_count(LOG, "+", "-", 1).await?;
    Ok(last.ids.first().map_or_else(|| "0-0".to_string(), |e| e.id.clone()))
}

/// Loads every record into `bans`; then settles the differences (see the module docs).
async fn load(con: &mut ConnectionManager, bans: &Bans) -> redis::RedisResult<()> {
    let memory = bans.policy().memory;
    let keys: Vec<String> = con.smembers(SET).await?;
    let now = unix_ms();
    let mut held = std::collections::HashSet::new();
    if !keys.is_empty() {
        let records: Vec<Option<String>> = redis::cmd("MGET")
            .arg(keys.iter().map(|k| format!("lm:ban:{k}")).collect::<Vec<_>>())
            .query_async(con)
            .await?;
        let mut gone = Vec::new();
        // Bans lifted here since they were issued: the lift's write did not land.
        let mut relift = redis::pipe();
        relift.atomic();
        let mut relifted = 0;
        for (key, record) in keys.iter().zip(records) {
            let Some(ban) = record.and_then(|r| serde_json::from_str::<Ban>(&r).ok()) else {
                gone.push(key.clone());
                continue;
            };
            match bans.lifted_at(ban.key).filter(|&at| ban.since_ms <= at) {
                Some(at) => {
                    tracing::info!(address = %ban.block(), "deleting a ban lifted here from Redis again");
                    unstore(&mut relift, ban.key, at, memory);
                    relifted += 1;
                }
                None => {
                    held.insert(ban.key);
                    bans.learn(ban, now);
                }
            }
        }
        if relifted > 0 {
            relift.query_async::<()>(con).await?;
        }
        if !gone.is_empty() {
            let _: () = con.srem(SET, gone).await?;
        }
    }
    let missing: Vec<Ban> = bans.records().into_iter().filter(|b| !held.contains(&b.key)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let lifts: Vec<Option<u64>> =
        redis::cmd("MGET").arg(missing.iter().map(|b| lifted_key(b.key)).collect::<Vec<_>>()).query_async(con).await?;
    let mut lost = redis::pipe();
    let mut written = 0;
    for (ban, lifted) in missing.iter().zip(lifts) {
        match lifted {
            Some(at) if ban.since_ms <= at => {
                tracing::info!(address = %ban.block(), "dropping a ban lifted elsewhere");
                bans.lift(ban.key, false, at, now);
            }
            _ => {
                store(&mut lost, ban, memory);
                written += 1;
            }
        }
    }
    if written > 0 {
        tracing::info!(bans = written, "writing back bans Redis does not hold");
        lost.query_async::<()>(con).await?;
    }
    Ok(())
}

/// Adds the commands that store `ban` to `pipe`.
fn store(pipe: &mut redis::Pipeline, ban: &Ban, memory: Duration) {
    let json = serde_json::to_string(ban).expect("a ban serializes");
    let expires = ban.since_ms.saturating_add(memory.as_millis() as u64).max(ban.until_ms);
    pipe.cmd("SET").arg(record_key(ban.key)).arg(&json).arg("PXAT").arg(expires).ignore();
    pipe.sadd(SET, ban.key.to_string()).ignore();
}

/// Writes this node's bans and lifts, until the hub stops.
async fn write(mut con: ConnectionManager, bans: Arc<Bans>, hub: HubHandle, node: String) {
    let mut changes = bans.subscribe();
    loop {
        let change = tokio::select! {
            _ = hub.failed() => return,
            change = changes.recv() => change,
        };
        let mut pipe = redis::pipe();
        // A ban or a lift matters: retried through a short outage (the sync would
        // settle it later). A mark is tried once: it must not hold them up.
        let mut attempts = 5;
        match change {
            Ok(Change::Added { ban, local: true }) => {
                store(&mut pipe, &ban, bans.policy().memory);
                let json = serde_json::to_string(&ban).expect("a ban serializes");
                let log = [("op", "add"), ("node", node.as_str()), ("ban", json.as_str())];
                pipe.xadd_maxlen(LOG, redis::streams::StreamMaxlen::Approx(LOG_CAP), "*", &log).ignore();
            }
            Ok(Change::Lifted { key, local: true }) => {
                let at = bans.lifted_at(key).unwrap_or_else(unix_ms);
                unstore(pipe.atomic(), key, at, bans.policy().memory);
                let (key, at) = (key.to_string(), at.to_string());
                let log = [("op", "lift"), ("node", node.as_str()), ("key", key.as_str()), ("at", at.as_str())];
                pipe.xadd_maxlen(LOG, redis::streams::StreamMaxlen::Approx(LOG_CAP), "*", &log).ignore();
            }
            Ok(Change::Marked(mark)) => {
                let json = serde_json::to_string(&mark).expect("a mark serializes");
                let log = [("op", "mark"), ("node", node.as_str()), ("mark", json.as_str())];
                pipe.xadd_maxlen(LOG, redis::streams::StreamMaxlen::Approx(LOG_CAP), "*", &log).ignore();
                attempts = 1;
            }
            Ok(_) => continue,
            // Missed changes: the next resync writes back whatever Redis lacks.
            Err(RecvError::Lagged(n)) => {
                tracing::warn!("{n} ban changes were not written to Redis; the next sync writes them");
                continue;
            }
            Err(RecvError::Closed) => return,
        }
        for attempt in 0..attempts {
            match pipe.query_async::<()>(&mut con).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!("cannot write a ban change to Redis ({e}), attempt {}", attempt + 1);
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
            }
        }
    }
}

/// Follows the change stream from `last`, applying other nodes' changes.
async fn follow(mut con: ConnectionManager, bans: Arc<Bans>, hub: HubHandle, node: String, mut last: String) {
    let options = StreamReadOptions::default().block(READ_BLOCK_MS).count(256);
    loop {
        let ids = [last.clone()];
        let read = tokio::select! {
            _ = hub.failed() => return,
            read = con.xread_options::<_, _, Option<StreamReadReply>>(&[LOG], &ids, &options) => read,
        };
        let reply = match read {
            Ok(reply) => reply,
            Err(e) => {
                tracing::debug!("reading ban changes: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
            last = entry.id.clone();
            let field = |name: &str| entry.get::<String>(name);
            if field("node").as_deref() == Some(node.as_str()) {
                continue;
            }
            match field("op").as_deref() {
                Some("add") => {
                    if let Some(ban) = field("ban").and_then(|j| serde_json::from_str::<Ban>(&j).ok()) {
                        bans.learn(ban, unix_ms());
                    }
                }
                Some("lift") => {
                    if let Some(key) = field("key").and_then(|k| k.parse::<IpAddr>().ok()) {
                        // When it was lifted there (older entries carry no time).
                        let at = field("at").and_then(|t| t.parse().ok()).unwrap_or_else(unix_ms);
                        bans.lift(key, false, at, unix_ms());
                    }
                }
                Some("mark") => {
                    if let Some(mark) = field("mark").and_then(|j| serde_json::from_str::<Mark>(&j).ok()) {
                        let _ = hub.marked(mark);
                    }
                }
                _ => tracing::debug!(id = %entry.id, "an unknown entry in the ban log"),
            }
        }
    }
}

/// Loads every record every [`SYNC_EVERY`], until the hub stops; a sync that failed
/// (Redis restarting: the connection comes back at the next command) is tried again
/// after [`RETRY`].
async fn resync(mut con: ConnectionManager, bans: Arc<Bans>, hub: HubHandle) {
    const RETRY: Duration = Duration::from_millis(500);
    let mut wait = SYNC_EVERY;
    loop {
        tokio::select! {
            _ = hub.failed() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = match load(&mut con, &bans).await {
            Ok(()) => SYNC_EVERY,
            Err(e) => {
                tracing::debug!("ban sync: {e}");
                RETRY
            }
        };
    }
}
