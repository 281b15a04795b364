//! Cluster mode (`--redis-url`): the hub on the Redis backend.
//!
//! Nodes share nothing but Redis (the schema is in `matcher::store`); the matcher
//! service pairs. Each node runs three tasks beside its hub:
//! - the **writer** carries out the hub's requests ([`link::Op`]) in order, in
//!   pipelines, retrying a batch that failed on a broken connection (delivery is
//!   numbered, so a repeat is dropped by the receiver); claims of sessions another
//!   node held run beside it, each in its own task;
//! - the **reader** follows this node's inbox stream from the last id it saw, so a
//!   short Redis outage loses nothing, and hands envelopes and pairs to the hub;
//! - the **heartbeat** renews this node's key every second with its counts, reads the
//!   other live nodes' counts for the cluster-wide `online`, drops dead nodes from the
//!   registry, renews owner keys and tickets, and notices when Redis restarted empty
//!   (the cluster id is gone): then it writes the node's sessions and tickets back.
//!   Envelopes name their sending node, so replies go straight to its inbox and
//!   chats go on while the owner keys are still missing.
//!
//! A node that cannot reach Redis for `--redis-timeout-secs` fails its hub: every
//! socket is closed with 1012 (clients reconnect, through the balancer, to a healthy
//! node) and the process exits non-zero for its supervisor to restart.

pub mod bans;
pub mod link;

use crate::hub::backend::Backend;
use crate::hub::{Epoch, HubConfig, HubHandle};
use anyhow::Context;
use link::{Link, LinkBus, LinkDirectory, LinkMatchmaking, Op, mode_index};
use matcher::store::{self, field};
use protocol::{Mode, OnlineCounts};
use redis::aio::ConnectionManager;
use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, Pipeline};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How often the heartbeat runs.
const BEAT: Duration = Duration::from_secs(1);
/// Beats in a row a node's key must be missing before it counts as dead.
const DEAD_AFTER_MISSES: u32 = 3;
/// Most requests the writer sends in one pipeline.
const BATCH: usize = 512;
/// How long an idle inbox read blocks in Redis.
const READ_BLOCK_MS: usize = 1000;

/// Where the cluster is and how long a node may be cut off from it.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub redis_url: String,
    /// How long Redis may be unreachable before the node gives up its sockets.
    pub timeout: Duration,
}

/// Connects to Redis and starts the hub on the Redis backend, with its tasks. The
/// link is for [`Link::flush`] when the node stops.
pub async fn start(
    cluster: ClusterConfig,
    config: HubConfig,
    bans: std::sync::Arc<crate::bans::Bans>,
) -> anyhow::Result<(HubHandle, Link)> {
    let client = redis::Client::open(cluster.redis_url.as_str()).context("--redis-url is not a Redis URL")?;
    let manager_config = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_connection_timeout(Some(Duration::from_secs(2)));
    let con = ConnectionManager::new_with_config(client.clone(), manager_config)
        .await
        .with_context(|| format!("cannot reach Redis at {}", cluster.redis_url))?;
    let node = uuid::Uuid::new_v4().simple().to_string();
    let epoch = Epoch::now();
    let (ops, rx) = mpsc::unbounded_channel();
    let link = Link::new(node.clone(), epoch.unix_ms, config.grace.as_millis() as u64, ops);
    let backend = Backend::new(
        Box::new(LinkDirectory(link.clone())),
        Box::new(LinkBus(link.clone())),
        Box::new(LinkMatchmaking(link.clone())),
        bans,
    );
    let hub = HubHandle::start_at(config, backend, epoch);
    let node_tasks = Tasks { hub: hub.clone(), link: link.clone(), node, timeout: cluster.timeout };
    // The node is alive before anything is sent to it.
    let (mut cluster_id, mut known) = (String::new(), HashMap::new());
    node_tasks
        .beat(&mut con.clone(), &mut cluster_id, &mut known)
        .await
        .context("cannot register this node in Redis")?;
    bans::start(
        client.clone(),
        hub.bans().map_err(|_| anyhow::anyhow!("the hub stopped"))?,
        hub.clone(),
        node_tasks.node.clone(),
    )
    .await
    .context("cannot load the ban set from Redis")?;
    tracing::info!(node = %node_tasks.node, "cluster node up");
    tokio::spawn(node_tasks.clone().write(con.clone(), rx));
    tokio::spawn(node_tasks.clone().read(client));
    tokio::spawn(node_tasks.heartbeat(con, cluster_id, known));
    Ok((hub, link))
}

#[derive(Clone)]
struct Tasks {
    hub: HubHandle,
    link: Link,
    node: String,
    timeout: Duration,
}

/// Tracks how long Redis has been unreachable.
struct Outage {
    since: Option<Instant>,
}

impl Outage {
    /// Records a failure; true once it has lasted longer than `timeout`.
    fn failed(&mut self, what: &str, e: &redis::RedisError, timeout: Duration) -> bool {
        let since = *self.since.get_or_insert_with(|| {
            tracing::warn!("Redis unreachable ({what}): {e}");
            Instant::now()
        });
        since.elapsed() > timeout
    }

    fn ok(&mut self) {
        if self.since.take().is_some() {
            tracing::info!("Redis reachable again");
        }
    }
}

impl Tasks {
    fn give_up(&self, what: &str) {
        self.hub
            .fail(format!("Redis unreachable for over {:?} ({what}): asking every client to reconnect", self.timeout));
    }

    /// Carries out the hub's requests, in order.
    async fn write(self, mut con: ConnectionManager, mut rx: mpsc::UnboundedReceiver<Op>) {
        let mut outage = Outage { since: None };
        let mut batch = Vec::with_capacity(BATCH);
        while rx.recv_many(&mut batch, BATCH).await > 0 {
            let mut pipe = redis::pipe();
            for op in batch.drain(..) {
                match op {
                    // Off the writer's path: a stream of tokens this node does not
                    // know (each one a round trip) must not hold up relayed messages.
                    Op::Claim { conn, ip, token, at_address } => {
                        tokio::spawn(self.clone().claim(con.clone(), conn, ip, token, at_address));
                    }
                    Op::Flush(done) => {
                        if !self.run(&mut con, &pipe, &mut outage).await {
                            return;
                        }
                        pipe = redis::pipe();
                        let _ = done.send(());
                    }
                    op => self.add(&mut pipe, op),
                }
            }
            if !self.run(&mut con, &pipe, &mut outage).await {
                return;
            }
        }
    }

    /// Takes a session over through `token` (see [`Op::Claim`]) and hands the answer
    /// to the hub; tells the node that held it, and notes whether its peer is alive.
    async fn claim(
        self,
        mut con: ConnectionManager,
        conn: crate::hub::ConnId,
        ip: std::net::IpAddr,
        token: protocol::ResumeToken,
        at_address: usize,
    ) {
        let mut outage = Outage { since: None };
        let claim = redis::Script::new(store::CLAIM);
        let mut invocation = claim.key(store::token_key(&token.0.to_string()));
        invocation.arg(&self.node).arg(store::SESSION_PREFIX);
        let found: Option<(String, String, String)> = loop {
            match invocation.invoke_async(&mut con).await {
                Ok(found) => break found,
                Err(e) => {
                    if outage.failed("resuming", &e, self.timeout) {
                        return self.give_up("resuming");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        let found = found.and_then(|(sid, node, state)| Some((protocol::SessionId(sid.parse().ok()?), node, state)));
        let session = found.as_ref().map(|f| f.0);
        let (old, matched) = self.link.claimed(conn, ip, at_address, found);
        if let (Some(old), Some(session)) = (old, session) {
            tracing::info!(session = %session.0, from = %old, "resuming a session another node held");
            self.link.send(Op::Evict { node: old, session });
        }
        if let (Some((peer, id)), Some(session)) = (matched, session) {
            // Is its peer still somewhere? (On an error, assume so: the match then
            // ends only by the usual ways.)
            let node: Option<String> = con.hget(store::session_key(peer), "node").await.unwrap_or(None);
            let alive = match &node {
                Some(n) => con.exists(store::node_key(n)).await.unwrap_or(true),
                None => false,
            };
            self.link.peer_found(session, peer, id, node, alive, store::unix_ms());
        }
        let _ = self.hub.poll_backend();
    }

    /// Runs `pipe` until it goes through; false once Redis has been unreachable for
    /// too long (the hub has then failed).
    async fn run(&self, con: &mut ConnectionManager, pipe: &Pipeline, outage: &mut Outage) -> bool {
        if pipe.is_empty() {
            return true;
        }
        loop {
            match pipe.query_async::<()>(con).await {
                Ok(()) => {
                    outage.ok();
                    return true;
                }
                // A refusal by Redis itself (a script error, out of memory) would be
                // refused again: logged, and the batch is skipped.
                Err(e) if !transient(&e) => {
                    tracing::error!("Redis refused a batch of {} commands: {e}", pipe.len());
                    return true;
                }
                Err(e) => {
                    if outage.failed("writing", &e, self.timeout) {
                        self.give_up("writing");
                        return false;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Appends what `op` does to `pipe` (everything but claims).
    fn add(&self, pipe: &mut Pipeline, op: Op) {
        let ttl = store::OWNER_TTL.as_millis() as u64;
        let ticket_ttl = store::TICKET_TTL.as_millis() as u64;
        let [video, text] = store::queue_keys();
        match op {
            Op::Own { session, token, old } => {
                let token_key = store::token_key(&token.0.to_string());
                let old_key = old.map_or_else(|| token_key.clone(), |t| store::token_key(&t.0.to_string()));
                pipe.cmd("EVAL")
                    .arg(store::OWN)
                    .arg(3)
                    .arg(store::session_key(session))
                    .arg(token_key)
                    .arg(old_key)
                    .arg(&self.node)
                    .arg(session.0.to_string())
                    .arg(ttl)
                    .ignore();
            }
            Op::Disown { session, token } => {
                pipe.cmd("EVAL")
                    .arg(store::DISOWN)
                    .arg(2)
                    .arg(store::session_key(session))
                    .arg(store::token_key(&token.0.to_string()))
                    .arg(&self.node)
                    .arg(session.0.to_string())
                    .ignore();
            }
            Op::Save { session, snapshot } => {
                pipe.cmd("EVAL")
                    .arg(store::SAVE)
                    .arg(1)
                    .arg(store::session_key(session))
                    .arg(&self.node)
                    .arg(snapshot)
                    .arg(ttl)
                    .ignore();
            }
            Op::Forward { to, wire } => {
                pipe.cmd("EVAL")
                    .arg(store::FORWARD)
                    .arg(1)
                    .arg(store::session_key(to))
                    .arg(wire)
                    .arg(store::STREAM_MAXLEN)
                    .arg(to.0.to_string())
                    .ignore();
            }
            // The hot path: a plain XADD, no script. The inbox's expiry is its owner's
            // to renew; a dead node's gets envelopes only until its peers learn it died.
            Op::ForwardTo { node, to, wire } => xadd_inbox(pipe, &node, "env", to, Some(&wire)),
            Op::Evict { node, session } => {
                xadd_inbox(pipe, &node, "evict", session, None);
                // The node may be dead: its inbox must not outlive it.
                pipe.pexpire(store::inbox_key(&node), ttl as i64).ignore();
            }
            Op::Put { session, mode, since, record } => {
                let sid = session.0.to_string();
                pipe.cmd("SET").arg(store::ticket_key(session)).arg(&record).arg("PX").arg(ticket_ttl).ignore();
                pipe.zrem(&video, &sid).ignore().zrem(&text, &sid).ignore();
                pipe.zadd(store::queue_key(mode), &sid, since).ignore();
                xadd_ticket(pipe, &[(field::OP, "put"), (field::SESSION, &sid), (field::DATA, &record)]);
            }
            Op::Del(session) => {
                let sid = session.0.to_string();
                pipe.del(store::ticket_key(session)).ignore();
                pipe.zrem(&video, &sid).ignore().zrem(&text, &sid).ignore();
                xadd_ticket(pipe, &[(field::OP, "del"), (field::SESSION, &sid)]);
            }
            Op::Claim { .. } | Op::Flush(_) => unreachable!("the writer handles claims and flushes itself"),
        }
    }

    /// Follows this node's inbox from the last id seen.
    async fn read(self, client: redis::Client) {
        let inbox = store::inbox_key(&self.node);
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(Duration::from_millis(READ_BLOCK_MS as u64 + 2000)))
            .set_connection_timeout(Some(Duration::from_secs(2)));
        let options = StreamReadOptions::default().count(BATCH).block(READ_BLOCK_MS);
        let mut last_id = "0-0".to_string();
        let mut outage = Outage { since: None };
        let mut con = None;
        loop {
            if self.hub.failure().is_some() {
                return;
            }
            let reader = match con.as_mut() {
                Some(c) => c,
                None => match client.get_multiplexed_async_connection_with_config(&config).await {
                    Ok(c) => con.insert(c),
                    Err(e) => {
                        if outage.failed("reading", &e, self.timeout) {
                            return self.give_up("reading");
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                },
            };
            let reply: Option<StreamReadReply> = match reader.xread_options(&[&inbox], &[&last_id], &options).await {
                Ok(r) => r,
                Err(e) => {
                    con = None;
                    if outage.failed("reading", &e, self.timeout) {
                        return self.give_up("reading");
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            outage.ok();
            let mut news = false;
            for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                last_id.clone_from(&entry.id);
                if entry.get::<String>(field::KIND).as_deref() == Some("evict") {
                    let session = entry.get::<String>(field::TO).and_then(|s| s.parse::<uuid::Uuid>().ok());
                    news |= session.is_some_and(|s| self.link.evicted(protocol::SessionId(s)));
                    continue;
                }
                let data: Option<String> = entry.get(field::DATA);
                let Some(data) = data else { continue };
                news |= match entry.get::<String>(field::KIND).as_deref() {
                    Some("env") => {
                        let to = entry.get::<String>(field::TO).and_then(|s| s.parse::<uuid::Uuid>().ok());
                        to.is_some_and(|to| self.link.received(protocol::SessionId(to), &data))
                    }
                    Some("pair") => self.link.paired(&data),
                    _ => false,
                };
            }
            if news && self.hub.poll_backend().is_err() {
                return;
            }
        }
    }

    /// Every second: this node's heartbeat, the cluster's counts; now and then the
    /// renewal of owner keys and tickets.
    async fn heartbeat(self, mut con: ConnectionManager, mut cluster: String, mut known: HashMap<String, u32>) {
        let mut outage = Outage { since: None };
        let mut next_renewal = Instant::now() + store::RENEW_EVERY;
        let mut tick = tokio::time::interval(BEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.hub.failure().is_some() {
                return;
            }
            let mut result = self.beat(&mut con, &mut cluster, &mut known).await;
            if result.is_ok() && Instant::now() >= next_renewal {
                result = self.renew(&mut con).await;
                next_renewal = Instant::now() + store::RENEW_EVERY;
            }
            match result {
                Ok(()) => outage.ok(),
                Err(e) => {
                    if outage.failed("heartbeat", &e, self.timeout) {
                        return self.give_up("heartbeat");
                    }
                }
            }
        }
    }

    /// Renews this node's key with its counts and reads the others'. Checks the
    /// cluster id against `cluster` (the one seen last; empty at first): when Redis
    /// has lost it, it lost everything, and this node writes its state back.
    /// `known`: the other nodes seen alive, with how many beats in a row each one's
    /// key has been missing since. Every node notices a death on its own.
    async fn beat(
        &self,
        con: &mut ConnectionManager,
        cluster: &mut String,
        known: &mut HashMap<String, u32>,
    ) -> redis::RedisResult<()> {
        let Ok((counts, _, _)) = self.hub.counts() else { return Ok(()) };
        let own = format!("{} {}", counts.sessions, counts.in_match);
        let [video, text] = store::queue_keys();
        let candidate = uuid::Uuid::new_v4().simple().to_string();
        let (id, members, waiting_video, waiting_text): (String, Vec<String>, usize, usize) = redis::pipe()
            .cmd("SET")
            .arg(store::CLUSTER)
            .arg(&candidate)
            .arg("NX")
            .ignore()
            .get(store::CLUSTER)
            .cmd("SET")
            .arg(store::node_key(&self.node))
            .arg(&own)
            .arg("PX")
            .arg(store::NODE_TTL.as_millis() as u64)
            .ignore()
            .sadd(store::NODES, &self.node)
            .ignore()
            .pexpire(store::inbox_key(&self.node), store::OWNER_TTL.as_millis() as i64)
            .ignore()
            .smembers(store::NODES)
            .zcard(&video)
            .zcard(&text)
            .query_async(con)
            .await?;
        if *cluster != id {
            if !cluster.is_empty() {
                let (sessions, tickets) = self.link.rebuild();
                tracing::warn!(sessions, tickets, "Redis lost its state (restarted empty?): writing this node's back");
            }
            *cluster = id;
        }
        // The registry's members, and the nodes this one knew alive (another node may
        // have taken a dead one out of the registry first, or Redis may have lost it).
        let mut others: Vec<String> = members.into_iter().filter(|m| *m != self.node).collect();
        others.extend(known.keys().filter(|k| !others.contains(k)).cloned().collect::<Vec<_>>());
        let mut total = OnlineCounts::default();
        let mut died = Vec::new();
        if !others.is_empty() {
            let keys: Vec<String> = others.iter().map(|m| store::node_key(m)).collect();
            let beats: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(con).await?;
            let mut lapsed = Vec::new();
            for (member, beat) in others.iter().zip(beats) {
                match beat.as_deref().and_then(parse_counts) {
                    Some(c) => {
                        total.count = total.count.saturating_add(c.count);
                        total.chatting = total.chatting.saturating_add(c.chatting);
                        known.insert(member.clone(), 0);
                    }
                    None => {
                        lapsed.push(member.as_str());
                        // Dead after its key stayed missing for a few beats (a Redis that
                        // restarted empty misses every key until each node beats again).
                        if let Some(misses) = known.get_mut(member) {
                            *misses += 1;
                            if *misses >= DEAD_AFTER_MISSES {
                                died.push(member.clone());
                            }
                        }
                    }
                }
            }
            if !lapsed.is_empty() {
                let _: () = con.srem(store::NODES, &lapsed).await?;
            }
        }
        if !died.is_empty() {
            tracing::info!(nodes = ?died, "nodes whose heartbeat lapsed: their sessions' peers are told");
            for d in &died {
                known.remove(d);
            }
            let died: Vec<&str> = died.iter().map(String::as_str).collect();
            if self.link.nodes_died(&died, store::unix_ms()) {
                let _ = self.hub.poll_backend();
            }
        }
        if self.link.orphans_expired(store::unix_ms()) {
            let _ = self.hub.poll_backend();
        }
        let counts = {
            let mut st = self.link.lock();
            st.waiting[mode_index(Mode::Video)] = waiting_video;
            st.waiting[mode_index(Mode::Text)] = waiting_text;
            st.counts
        };
        metrics::counter!(crate::metrics::CLUSTER_REPEATS).absolute(counts.repeats);
        metrics::counter!(crate::metrics::CLUSTER_GAPS).absolute(counts.gaps);
        let _ = self.hub.set_other_nodes(total);
        Ok(())
    }

    /// Renews the owner keys of this node's sessions and its tickets' expiry.
    async fn renew(&self, con: &mut ConnectionManager) -> redis::RedisResult<()> {
        let (sessions, tickets): (Vec<_>, Vec<_>) = {
            let st = self.link.lock();
            (st.tokens().collect(), st.tickets.keys().copied().collect())
        };
        let ttl = store::OWNER_TTL.as_millis() as i64;
        let ticket_ttl = store::TICKET_TTL.as_millis() as i64;
        for chunk in sessions.chunks(BATCH * 2) {
            let mut pipe = redis::pipe();
            for (session, token) in chunk {
                pipe.pexpire(store::session_key(*session), ttl).ignore();
                pipe.pexpire(store::token_key(&token.0.to_string()), ttl).ignore();
            }
            pipe.query_async::<()>(con).await?;
        }
        for chunk in tickets.chunks(BATCH * 4) {
            let mut pipe = redis::pipe();
            for s in chunk {
                pipe.pexpire(store::ticket_key(*s), ticket_ttl).ignore();
            }
            pipe.query_async::<()>(con).await?;
        }
        Ok(())
    }
}

/// Whether trying again may succeed: the connection, or a Redis that is starting,
/// busy or failing over.
fn transient(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.is_connection_refusal()
        || matches!(e.code(), Some("LOADING" | "BUSY" | "TRYAGAIN" | "MASTERDOWN" | "READONLY"))
}

/// Appends an entry for session `to` to `node`'s inbox. The hot path of relaying: a
/// plain XADD, no script. The inbox's expiry is its owner's to renew; a dead node's
/// gets entries only until its peers learn it died.
fn xadd_inbox(pipe: &mut Pipeline, node: &str, kind: &str, to: protocol::SessionId, data: Option<&str>) {
    let cmd = pipe.cmd("XADD").arg(store::inbox_key(node)).arg("MAXLEN").arg("~").arg(store::STREAM_MAXLEN).arg("*");
    cmd.arg(field::KIND).arg(kind).arg(field::TO).arg(to.0.to_string());
    if let Some(data) = data {
        cmd.arg(field::DATA).arg(data);
    }
    cmd.ignore();
}

fn xadd_ticket(pipe: &mut Pipeline, fields: &[(&str, &str)]) {
    let cmd = pipe.cmd("XADD").arg(store::TICKETS).arg("MAXLEN").arg("~").arg(store::STREAM_MAXLEN).arg("*");
    for (k, v) in fields {
        cmd.arg(*k).arg(*v);
    }
    cmd.ignore();
}

/// A heartbeat's `"{sessions} {chatting}"`.
fn parse_counts(beat: &str) -> Option<OnlineCounts> {
    let (count, chatting) = beat.split_once(' ')?;
    Some(OnlineCounts { count: count.parse().ok()?, chatting: chatting.parse().ok()? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_parse_or_count_as_dead() {
        assert_eq!(parse_counts("12 4"), Some(OnlineCounts { count: 12, chatting: 4 }));
        assert_eq!(parse_counts("12"), None);
        assert_eq!(parse_counts("x 4"), None);
    }
}
