//! The matcher service: the [`Matcher`] state machine over Redis, for a cluster.
//!
//! Several processes run; exactly one is active. It holds the lease
//! ([`store::LEASE`], renewed every third of its life) and the epoch it raised on
//! taking it. The others try to take the lease as it lapses. The active one:
//! 1. notes where the ticket stream ends, then loads every waiting ticket from the
//!    queues (so a restart, or a standby taking over, rebuilds the pool from Redis);
//! 2. follows the ticket stream from the noted id (nothing is missed in between:
//!    changes after the note are replayed, changes before it are in the load);
//! 3. commits each pair with the fenced [`store::PAIR`] script. A pairing refused
//!    for its epoch means a newer matcher took over: this one stands down at once.
//!    A ticket gone or changed since is dropped from the pool, and its partner goes
//!    back in.

use crate::store::{self, PairRecord, TicketRecord, field};
use crate::{Config, Matcher, Millis, Pair};
use anyhow::Context;
use protocol::SessionId;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, Script};
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

/// How the service runs.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    pub redis_url: String,
    /// This process's name in the lease (unique per process).
    pub id: String,
    /// How long the lease lives unless renewed: the longest a crashed matcher stops
    /// pairing before a standby takes over.
    pub lease: Duration,
    pub matching: Config,
}

/// Why leading stopped.
enum Stood {
    /// Asked to stop.
    Shutdown,
    /// Another matcher holds a newer epoch, or the lease could not be renewed.
    Fenced,
}

/// Runs until `shutdown` completes: standby, then active whenever the lease is free.
pub async fn run(config: ServiceConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let client = redis::Client::open(config.redis_url.as_str()).context("--redis-url")?;
    let manager_config = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_connection_timeout(Some(Duration::from_secs(2)));
    let mut con = ConnectionManager::new_with_config(client.clone(), manager_config)
        .await
        .with_context(|| format!("cannot reach Redis at {}", config.redis_url))?;
    let scripts = Scripts::new();
    tokio::pin!(shutdown);
    tracing::info!(id = %config.id, "matcher standing by");
    loop {
        let epoch = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            epoch = acquire(&mut con, &scripts, &config) => epoch,
        };
        tracing::info!(epoch, id = %config.id, "matcher active");
        let led = tokio::select! {
            _ = &mut shutdown => Ok(Stood::Shutdown),
            led = lead(&client, &mut con, &scripts, &config, epoch) => led,
        };
        match led {
            Ok(Stood::Shutdown) => {
                let _: Result<i64, _> = scripts.release.key(store::LEASE).arg(&config.id).invoke_async(&mut con).await;
                tracing::info!("matcher stopped; lease released");
                return Ok(());
            }
            Ok(Stood::Fenced) => tracing::warn!(epoch, "fenced: a newer matcher is active; standing by"),
            Err(e) => tracing::warn!(epoch, "matcher lost Redis while active: {e:#}; standing by"),
        }
    }
}

struct Scripts {
    acquire: Script,
    renew: Script,
    release: Script,
    pair: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            acquire: Script::new(store::ACQUIRE),
            renew: Script::new(store::RENEW),
            release: Script::new(store::RELEASE),
            pair: Script::new(store::PAIR),
        }
    }
}

/// Waits until this process holds the lease; returns its epoch.
async fn acquire(con: &mut ConnectionManager, scripts: &Scripts, config: &ServiceConfig) -> u64 {
    let every = config.lease / 4;
    loop {
        let got: redis::RedisResult<u64> = scripts
            .acquire
            .key(store::LEASE)
            .key(store::EPOCH)
            .arg(&config.id)
            .arg(config.lease.as_millis() as u64)
            .arg(store::unix_ms())
            .invoke_async(con)
            .await;
        match got {
            Ok(0) => {}
            Ok(epoch) => return epoch,
            Err(e) => tracing::warn!("cannot reach Redis to take the lease: {e}"),
        }
        tokio::time::sleep(every).await;
    }
}

/// The pool: the matcher and the exact stored record of each ticket in it.
struct Pool {
    matcher: Matcher,
    records: HashMap<SessionId, (String, TicketRecord)>,
}

impl Pool {
    /// Puts a ticket in (replacing the session's earlier one); returns new pairs.
    fn put(&mut self, raw: String, record: TicketRecord, now: Millis) -> Vec<Pair> {
        let (ticket, since, session) = (record.ticket.clone(), record.since, record.ticket.session);
        self.records.insert(session, (raw, record));
        self.matcher.insert(ticket, since, now)
    }

    fn remove(&mut self, session: SessionId) {
        self.matcher.remove(session);
        self.records.remove(&session);
    }

    /// A stream entry about `session` arrived while `pending` (pairs made from this
    /// batch, not committed yet) pairs it: that pair is off, and the partner goes back
    /// into the pool (which may pair it again at once).
    fn unpair(&mut self, session: SessionId, pending: &mut Vec<Pair>, now: Millis) {
        let Some(i) = pending.iter().position(|p| p.first == session || p.second == session) else { return };
        let pair = pending.remove(i);
        let partner = if pair.first == session { pair.second } else { pair.first };
        if let Some((raw, record)) = self.records.remove(&partner) {
            pending.extend(self.put(raw, record, now));
        }
    }
}

/// Leads until fenced, shut down, or Redis fails.
async fn lead(
    client: &redis::Client,
    con: &mut ConnectionManager,
    scripts: &Scripts,
    config: &ServiceConfig,
    epoch: u64,
) -> anyhow::Result<Stood> {
    // Blocking reads get their own connection, so they never hold up the scripts.
    // Its timeout is long: a read blocks at most 200 ms, and a process that was paused
    // must not mistake its own pause for a dead Redis.
    let reader_config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(10)));
    let mut reader = client.get_multiplexed_async_connection_with_config(&reader_config).await?;
    let _: String = redis::cmd("SCRIPT").arg("LOAD").arg(store::PAIR).query_async(con).await?;
    // 1. Where the stream ends now, then everything waiting.
    let tail: redis::streams::StreamRangeReply = con.xrevrange_count(store::TICKETS, "+", "-", 1).await?;
    let mut last_id = tail.ids.first().map_or_else(|| "0-0".to_string(), |e| e.id.clone());
    let mut pool = Pool { matcher: Matcher::new(config.matching), records: HashMap::new() };
    let now = store::unix_ms();
    let mut pairs = Vec::new();
    let mut loaded = 0usize;
    for queue in store::queue_keys() {
        let members: Vec<String> = con.zrange(&queue, 0, -1).await?;
        for chunk in members.chunks(1000) {
            let keys: Vec<String> = chunk.iter().map(|s| format!("lm:ticket:{s}")).collect();
            let raws: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(con).await?;
            for (member, raw) in chunk.iter().zip(raws) {
                match raw.and_then(|raw| serde_json::from_str::<TicketRecord>(&raw).ok().map(|r| (raw, r))) {
                    Some((raw, record)) => {
                        loaded += 1;
                        pairs.extend(pool.put(raw, record, now));
                    }
                    // Expired (its node died) or unreadable: out of the queue.
                    None => {
                        let _: () = con.zrem(&queue, member).await?;
                    }
                }
            }
        }
    }
    tracing::info!(loaded, "pool rebuilt from Redis");
    if commit(con, scripts, &mut pool, pairs, epoch).await? {
        return Ok(Stood::Fenced);
    }
    // 2. Follow the changes.
    let renew_every = config.lease / 3;
    let mut renew_at = tokio::time::Instant::now() + renew_every;
    loop {
        let now = store::unix_ms();
        let until_deadline = pool.matcher.next_deadline().map_or(200, |t| t.saturating_sub(now).clamp(1, 200));
        let until_renew = renew_at.saturating_duration_since(tokio::time::Instant::now()).as_millis() as u64;
        let block = until_deadline.min(until_renew).max(1) as usize;
        let options = StreamReadOptions::default().count(1000).block(block);
        let reply: Option<StreamReadReply> = read(&mut reader, &last_id, &options).await?;
        let now = store::unix_ms();
        let mut pairs = Vec::new();
        for key in reply.into_iter().flat_map(|r| r.keys) {
            for entry in key.ids {
                last_id = entry.id.clone();
                let session =
                    entry.get::<String>(field::SESSION).and_then(|s| s.parse::<uuid::Uuid>().ok()).map(SessionId);
                let Some(session) = session else { continue };
                // Every pair in `pairs` must hold the tickets as they are now.
                pool.unpair(session, &mut pairs, now);
                match entry.get::<String>(field::OP).as_deref() {
                    Some("put") => {
                        let raw: Option<String> = entry.get(field::DATA);
                        match raw.and_then(|raw| serde_json::from_str::<TicketRecord>(&raw).ok().map(|r| (raw, r))) {
                            Some((raw, record)) if record.ticket.session == session => {
                                pairs.extend(pool.put(raw, record, now));
                            }
                            _ => tracing::warn!(%last_id, "unreadable ticket in the stream; skipped"),
                        }
                    }
                    Some("del") => pool.remove(session),
                    _ => tracing::warn!(%last_id, "unknown ticket stream entry; skipped"),
                }
            }
        }
        pairs.extend(pool.matcher.tick(now));
        if commit(con, scripts, &mut pool, pairs, epoch).await? {
            return Ok(Stood::Fenced);
        }
        if tokio::time::Instant::now() >= renew_at {
            let renewed: u64 = scripts
                .renew
                .key(store::LEASE)
                .key(store::EPOCH)
                .arg(&config.id)
                .arg(config.lease.as_millis() as u64)
                .arg(epoch)
                .invoke_async(con)
                .await?;
            if renewed == 0 {
                return Ok(Stood::Fenced);
            }
            renew_at = tokio::time::Instant::now() + renew_every;
        }
    }
}

async fn read(
    reader: &mut MultiplexedConnection,
    last_id: &str,
    options: &StreamReadOptions,
) -> redis::RedisResult<Option<StreamReadReply>> {
    reader.xread_options(&[store::TICKETS], &[last_id], options).await
}

/// Commits `pairs`, one fenced script each, pipelined. Partners of tickets that are
/// gone go back into the pool (which may pair them again at once). Returns whether
/// this matcher was fenced off.
async fn commit(
    con: &mut ConnectionManager,
    scripts: &Scripts,
    pool: &mut Pool,
    mut pairs: Vec<Pair>,
    epoch: u64,
) -> anyhow::Result<bool> {
    let epoch_arg = epoch.to_string();
    while !pairs.is_empty() {
        let batch: Vec<Pair> = std::mem::take(&mut pairs);
        let mut pipe = redis::pipe();
        let mut sides = Vec::with_capacity(batch.len());
        let mut committing = Vec::with_capacity(batch.len());
        for pair in batch {
            let (Some((raw_a, a)), Some((raw_b, b))) =
                (pool.records.remove(&pair.first), pool.records.remove(&pair.second))
            else {
                // Cannot happen (see `Pool::unpair`); should it, the pair is off and
                // whichever side is still known goes back.
                tracing::error!(first = %pair.first.0, second = %pair.second.0, "a paired ticket without its record");
                continue;
            };
            let message = serde_json::to_string(&PairRecord {
                pair: pair.clone(),
                first: a.seat.clone(),
                second: b.seat.clone(),
                second_node: Some(b.node.clone()),
            })?;
            pipe.cmd("EVALSHA")
                .arg(scripts.pair.get_hash())
                .arg(7)
                .arg(store::EPOCH)
                .arg(store::ticket_key(pair.first))
                .arg(store::ticket_key(pair.second))
                .arg(store::queue_key(pair.mode))
                .arg(store::inbox_key(&a.node))
                .arg(store::node_key(&a.node))
                .arg(store::node_key(&b.node))
                .arg(&epoch_arg)
                .arg(&raw_a)
                .arg(&raw_b)
                .arg(pair.first.0.to_string())
                .arg(pair.second.0.to_string())
                .arg(message)
                .arg(store::STREAM_MAXLEN);
            sides.push(((raw_a, a), (raw_b, b)));
            committing.push(pair);
        }
        let batch = committing;
        if batch.is_empty() {
            continue;
        }
        let answers: Vec<String> = match pipe.query_async(con).await {
            Ok(answers) => answers,
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // Redis restarted (empty script cache): load and try the batch again.
                let _: String = redis::cmd("SCRIPT").arg("LOAD").arg(store::PAIR).query_async(con).await?;
                for (pair, ((raw_a, a), (raw_b, b))) in batch.iter().zip(sides) {
                    pool.records.insert(pair.first, (raw_a, a));
                    pool.records.insert(pair.second, (raw_b, b));
                }
                pairs = batch;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let now = store::unix_ms();
        for ((pair, answer), ((raw_a, a), (raw_b, b))) in batch.iter().zip(answers).zip(sides) {
            match answer.as_str() {
                "ok" => tracing::debug!(first = %pair.first.0, second = %pair.second.0, "paired"),
                "fenced" => {
                    tracing::warn!(epoch, "pairing refused by the fence: epoch {epoch} is no longer current");
                    return Ok(true);
                }
                // The other side goes back in; the gone one's change (if it changed)
                // comes through the stream.
                "first" => pairs.extend(pool.put(raw_b, b, now)),
                "second" => pairs.extend(pool.put(raw_a, a, now)),
                other => anyhow::bail!("unexpected answer from the pairing script: {other}"),
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Ticket;
    use protocol::Mode;

    fn record(n: u128, since: Millis) -> (String, TicketRecord) {
        let session = SessionId(uuid::Uuid::from_u128(n));
        let ticket =
            Ticket { session, mode: Mode::Text, interests: vec![], country: None, same_country: false, avoid: vec![] };
        let record = TicketRecord { ticket, since, node: "n".into(), seat: serde_json::Value::Null };
        (serde_json::to_string(&record).unwrap(), record)
    }

    #[test]
    fn a_change_to_a_side_of_an_uncommitted_pair_calls_it_off() {
        let mut pool = Pool { matcher: Matcher::new(Config::default()), records: HashMap::new() };
        let (a, b, c) = (record(1, 10), record(2, 20), record(3, 30));
        let mut pending = Vec::new();
        pending.extend(pool.put(a.0.clone(), a.1.clone(), 100));
        pending.extend(pool.put(b.0, b.1, 100));
        assert_eq!(pending.len(), 1, "a and b paired");
        // a withdraws before the pair is committed: b goes back and meets c instead.
        pool.unpair(a.1.ticket.session, &mut pending, 100);
        pool.remove(a.1.ticket.session);
        assert!(pending.is_empty());
        pending.extend(pool.put(c.0, c.1, 100));
        assert_eq!(pending.len(), 1);
        let p = &pending[0];
        assert_eq!((p.first, p.second), (SessionId(uuid::Uuid::from_u128(2)), SessionId(uuid::Uuid::from_u128(3))));
        assert!(pool.records.contains_key(&p.first) && pool.records.contains_key(&p.second), "both records kept");
        // Nobody else is mentioned: unpairing an unknown session changes nothing.
        pool.unpair(SessionId(uuid::Uuid::from_u128(9)), &mut pending, 100);
        assert_eq!(pending.len(), 1);
    }
}
