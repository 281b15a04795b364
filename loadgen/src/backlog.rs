//! `matcher-backlog`: the matcher service draining a backlog of waiting tickets.
//!
//! Writes N compatible tickets into a cluster's Redis exactly as server nodes do
//! (records, the per-mode queue) for a node that does not exist ("bench"), then waits
//! for a matcher to take the lease and empty the queue. Reports how long the matcher
//! took from taking the lease to the last pairing, the pairs per second, and checks in
//! the bench node's inbox that every ticket was paired exactly once. Start the matcher
//! after loading (or kill the active one: the standby rebuilds from Redis).

use crate::scenarios::Report;
use anyhow::{Context, bail};
use matcher::store::{self, PairRecord, TicketRecord};
use matcher::{Millis, Ticket};
use protocol::{Mode, SessionId};
use redis::AsyncCommands;
use serde_json::json;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// The node name the tickets carry: pairs land in `lm:inbox:bench`.
const NODE: &str = "bench";

pub async fn run(redis_url: &str, tickets: usize, wait: Duration) -> anyhow::Result<Report> {
    let client = redis::Client::open(redis_url).context("--redis-url")?;
    let info = client.get_connection_info();
    if let redis::ConnectionAddr::Tcp(host, port) = info.addr() {
        crate::http::loopback_addr(&format!("{host}:{port}"))?;
    } else {
        bail!("only redis:// URLs on loopback are supported");
    }
    let mut con = client.get_multiplexed_async_connection().await.context("cannot reach Redis")?;
    let queue = store::queue_key(Mode::Text);
    let inbox = store::inbox_key(NODE);
    // The bench node must look alive: the matcher pairs only tickets of live nodes.
    let _: () = redis::pipe()
        .del(&queue)
        .del(&inbox)
        .cmd("SET")
        .arg(store::node_key(NODE))
        .arg("0 0")
        .arg("PX")
        .arg(wait.as_millis() as u64 + 60_000)
        .query_async(&mut con)
        .await?;
    // 1. The backlog.
    let now = store::unix_ms();
    let loading = Instant::now();
    for chunk_start in (0..tickets).step_by(1000) {
        let mut pipe = redis::pipe();
        for i in chunk_start..(chunk_start + 1000).min(tickets) {
            let session = SessionId(uuid::Uuid::from_u128(0xbe4c_0000_0000_0000_0000_0000_0000_0000 | i as u128));
            let record = TicketRecord {
                ticket: Ticket {
                    session,
                    mode: Mode::Text,
                    interests: Vec::new(),
                    country: None,
                    same_country: false,
                    avoid: Vec::new(),
                },
                since: now - (tickets - i) as Millis,
                node: NODE.into(),
                seat: json!({"country": null, "same_country": false, "declared": null, "ip": "127.0.0.1"}),
            };
            let sid = session.0.to_string();
            pipe.cmd("SET")
                .arg(store::ticket_key(session))
                .arg(serde_json::to_string(&record)?)
                .arg("PX")
                .arg(600_000)
                .ignore();
            pipe.zadd(&queue, &sid, record.since).ignore();
        }
        pipe.query_async::<()>(&mut con).await?;
    }
    let loaded_in = loading.elapsed();
    eprintln!("{tickets} tickets waiting in {queue} ({loaded_in:.1?}); waiting for a matcher to take the lease");
    // 2. A matcher takes the lease, then drains the queue.
    let deadline = Instant::now() + wait;
    let active = loop {
        let holder: Option<String> = con.get(store::LEASE).await?;
        if holder.is_some() {
            break Instant::now();
        }
        if Instant::now() > deadline {
            bail!("no matcher took the lease within {wait:?}: start one with --redis-url {redis_url}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let drained = loop {
        let left: usize = con.zcard(&queue).await?;
        if left == 0 {
            break Instant::now();
        }
        if Instant::now() > deadline {
            bail!("{left} tickets still waiting after {wait:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let took = drained - active;
    // 3. Every ticket paired exactly once.
    let mut seen = HashSet::with_capacity(tickets);
    let mut pairs = 0usize;
    let mut from = "-".to_string();
    loop {
        let page: redis::streams::StreamRangeReply = con.xrange_count(&inbox, &from, "+", 10_000).await?;
        let Some(last) = page.ids.last() else { break };
        from = format!("({}", last.id);
        for entry in &page.ids {
            let data: String = entry.get(store::field::DATA).context("a pair without data")?;
            let record: PairRecord = serde_json::from_str(&data)?;
            pairs += 1;
            for s in [record.pair.first, record.pair.second] {
                if !seen.insert(s) {
                    bail!("{} was paired twice", s.0);
                }
            }
        }
    }
    let _: () = redis::pipe().del(&inbox).del(store::node_key(NODE)).query_async(&mut con).await?;
    let mut report = Report::new("matcher-backlog");
    report.add("tickets", "waiting tickets", json!(tickets), tickets.to_string());
    report.add("pairs", "pairs handed to the node", json!(pairs), pairs.to_string());
    if seen.len() != tickets - tickets % 2 {
        report.fail(format!("{} of {tickets} tickets were paired", seen.len()));
    }
    let secs = took.as_secs_f64();
    report.add("seconds", "lease taken → queue empty (rebuild included)", json!(secs), format!("{secs:.2} s"));
    let rate = pairs as f64 / secs;
    report.add("pairs_per_sec", "pairs per second", json!(rate), format!("{rate:.0}"));
    Ok(report)
}
