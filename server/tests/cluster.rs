//! A real cluster on loopback: a redis-server of its own, matcher service processes
//! and two server nodes, with the two clients of every pair on different nodes.

mod common;

use common::cluster::{Haproxy, MatcherProcess, NodeProcess, Redis, node};
use common::{Client, WAIT};
use protocol::{ClientMsg, LeftReason, MatchId, Mode, Role, ServerMsg, SignalPayload};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// Lease of the matchers in these tests: a crashed one is replaced within it.
const LEASE_MS: u64 = 1000;

#[tokio::test]
async fn strangers_on_two_nodes_are_paired_and_relay_through_redis() {
    let redis = Redis::start().await;
    let matcher = MatcherProcess::start(&redis, LEASE_MS, 5.0);
    matcher.wait_active(&redis, WAIT).await;
    let (one, two) = (node(&redis).await, node(&redis).await);

    let mut a = one.client().await;
    let mut b = two.client().await;
    a.join(Mode::Video, &["chess", "jazz"]).await;
    b.join(Mode::Video, &["jazz"]).await;
    let (ma, mb) = (a.matched().await, b.matched().await);
    assert_eq!(ma.id, mb.id, "one match, told on both nodes");
    assert_eq!((ma.role, mb.role), (Role::Offerer, Role::Answerer), "the one who waited longer offers");
    assert_eq!(ma.common_interests, vec!["jazz".to_string()]);
    let id = ma.id;

    // Signals wait for the receiver's `ready`, on the receiver's node.
    a.send(&ClientMsg::Ready { match_id: id }).await;
    let offer = SignalPayload::Offer { sdp: "v=0 offer".into() };
    a.send(&ClientMsg::Signal { match_id: id, payload: offer.clone(), generation: None }).await;
    b.expect_silence(Duration::from_millis(300)).await;
    b.send(&ClientMsg::Ready { match_id: id }).await;
    assert_eq!(b.recv().await, ServerMsg::Signal { match_id: id, payload: offer, generation: None });
    // In order, both ways.
    for n in 0..20 {
        b.send(&ClientMsg::Chat { match_id: id, text: format!("line {n}") }).await;
    }
    for n in 0..20 {
        assert_eq!(a.recv().await, ServerMsg::Chat { match_id: id, text: format!("line {n}") });
    }
    // A stale match id from the other node's side is refused, and nothing crosses.
    let stale = MatchId(uuid::Uuid::from_u128(9));
    a.send(&ClientMsg::Chat { match_id: stale, text: "lost".into() }).await;
    assert!(matches!(a.recv().await, ServerMsg::Error { code: protocol::ErrorCode::StaleMatch, .. }));
    b.expect_silence(Duration::from_millis(200)).await;

    // `next` ends it on both nodes, and the two are kept apart for the cooldown.
    a.send(&ClientMsg::Next).await;
    assert_eq!(b.recv().await, ServerMsg::PeerLeft { match_id: id, reason: LeftReason::Skipped });
    assert!(matches!(a.recv().await, ServerMsg::Queued { .. }), "next queues again");
    b.join(Mode::Video, &[]).await;
    a.expect_silence(Duration::from_millis(800)).await;
    b.expect_silence(Duration::from_millis(10)).await;
    // A third stranger, on the second node, sharing an interest with the first.
    let mut c = two.client().await;
    c.join(Mode::Video, &["chess"]).await;
    let (mc, ma2) = (c.matched().await, a.matched().await);
    assert_eq!(mc.id, ma2.id);
    assert_eq!(mc.common_interests, vec!["chess".to_string()]);
    two.wait_stats(|s| s.waiting == 1).await; // b still waits (counted cluster-wide)

    // `stop` ends it on the other node too.
    c.send(&ClientMsg::Stop).await;
    assert_eq!(a.recv().await, ServerMsg::PeerLeft { match_id: mc.id, reason: LeftReason::Stopped });
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn online_counts_add_up_over_the_nodes() {
    let redis = Redis::start().await;
    let (one, two) = (node(&redis).await, node(&redis).await);
    let _on_one: Vec<Client> = futures_util::future::join_all((0..3).map(|_| one.client())).await;
    let mut watcher = two.client().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "the second node never counted the first one's sessions");
        // Pushes come when counts change: a quiet spell is no failure before the deadline.
        if let ServerMsg::Online(counts) = watcher.recv_any_within(deadline - Instant::now()).await
            && counts.count == 4
        {
            break;
        }
    }
    // A node that stops drops out of the count once its heartbeat lapses.
    drop(_on_one);
    one.stop().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(Instant::now() < deadline, "the stopped node was still counted");
        if let ServerMsg::Online(counts) = watcher.recv_any_within(deadline - Instant::now()).await
            && counts.count == 1
        {
            break;
        }
    }
    two.stop().await;
}

/// `n` clients, alternating between the nodes, each waiting with an interest nobody
/// else has (so they wait for the interest fallback).
async fn waiting_users(nodes: [&common::TestServer; 2], n: usize) -> Vec<Client> {
    let mut users = Vec::with_capacity(n);
    for i in 0..n {
        let mut c = nodes[i % 2].client().await;
        c.join(Mode::Text, &[&format!("only-{i}")]).await;
        users.push(c);
    }
    users
}

/// Every user's first `matched`; asserts each match has exactly two users and nobody
/// is matched twice.
async fn all_matched(users: &mut [Client]) -> HashMap<MatchId, usize> {
    let mut per_match: HashMap<MatchId, usize> = HashMap::new();
    for u in users.iter_mut() {
        let m =
            tokio::time::timeout(Duration::from_secs(15), u.matched()).await.expect("every waiting user is matched");
        u.send(&ClientMsg::Ready { match_id: m.id }).await;
        *per_match.entry(m.id).or_default() += 1;
    }
    assert!(per_match.values().all(|&n| n == 2), "every match has exactly two users");
    for u in users.iter_mut() {
        u.expect_silence(Duration::from_millis(1)).await;
    }
    per_match
}

#[tokio::test]
async fn a_standby_matcher_takes_over_when_the_active_one_is_killed() {
    let redis = Redis::start().await;
    let first = MatcherProcess::start(&redis, LEASE_MS, 3.0);
    first.wait_active(&redis, WAIT).await;
    let standby = MatcherProcess::start(&redis, LEASE_MS, 3.0);
    let (one, two) = (node(&redis).await, node(&redis).await);
    let mut users = waiting_users([&one, &two], 200).await;
    first.signal("-KILL");
    let killed = Instant::now();
    standby.wait_active(&redis, Duration::from_millis(LEASE_MS * 3)).await;
    let took_over = killed.elapsed();
    let per_match = all_matched(&mut users).await;
    let recovered = killed.elapsed();
    assert_eq!(per_match.len(), 100);
    for u in users.iter_mut() {
        u.expect_silence(Duration::from_millis(200)).await;
    }
    eprintln!("standby active {took_over:?} after kill -9; all 200 matched {recovered:?} after it");
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn a_paused_matcher_is_fenced_off_once_a_standby_took_over() {
    let redis = Redis::start().await;
    let first = MatcherProcess::start(&redis, LEASE_MS, 3.0);
    first.wait_active(&redis, WAIT).await;
    let standby = MatcherProcess::start(&redis, LEASE_MS, 3.0);
    let (one, two) = (node(&redis).await, node(&redis).await);
    // Both wait for the fallback in the active matcher's pool when it freezes.
    let mut users = waiting_users([&one, &two], 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    first.signal("-STOP");
    standby.wait_active(&redis, Duration::from_millis(LEASE_MS * 3)).await;
    // The standby rebuilt the pool from Redis and pairs the two at their fallback.
    let per_match = all_matched(&mut users).await;
    assert_eq!(per_match.len(), 1);
    // The old leader wakes up past the fallback with the same two in its pool: its
    // pairing is refused by the epoch, and it stands down.
    first.signal("-CONT");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !first.log_text().contains("refused by the fence") {
        assert!(Instant::now() < deadline, "the paused matcher's pairing was not refused:\n{}", first.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for u in users.iter_mut() {
        u.expect_silence(Duration::from_millis(500)).await;
    }
    assert!(standby.is_active(&redis).await, "the standby keeps the lease");
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn killed_redis_connections_lose_no_relayed_message_and_repeat_none() {
    let redis = Redis::start().await;
    let matcher = MatcherProcess::start(&redis, LEASE_MS, 5.0);
    matcher.wait_active(&redis, WAIT).await;
    // Lines go out faster than a person types: lift the per-session message rate, and
    // the receiver's outbox (a backlog read after a reconnect arrives all at once).
    let fast = || {
        let mut c = common::config();
        c.redis_url = Some(redis.url());
        (c.rate_per_sec, c.rate_burst, c.outbox) = (100_000, 100_000, 1024);
        common::TestServer::start(c)
    };
    let (one, two) = (fast().await, fast().await);
    let mut a = one.client().await;
    let mut b = two.client().await;
    a.join(Mode::Text, &[]).await;
    b.join(Mode::Text, &[]).await;
    let id = a.matched().await.id;
    b.matched().await;
    let mut con = redis.connection().await.unwrap();
    // Every connection the nodes hold is cut, again and again, while lines cross;
    // the killer's own connection is spared.
    let mut killed = 0u64;
    for n in 0..300 {
        a.send(&ClientMsg::Chat { match_id: id, text: format!("line {n}") }).await;
        if n % 30 == 15 {
            let k: u64 = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("normal")
                .arg("SKIPME")
                .arg("yes")
                .query_async(&mut con)
                .await
                .unwrap();
            killed += k;
        }
        if n % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert!(killed >= 5, "the nodes' connections were cut ({killed})");
    for n in 0..300 {
        assert_eq!(b.recv().await, ServerMsg::Chat { match_id: id, text: format!("line {n}") }, "in order, once each");
    }
    b.expect_silence(Duration::from_millis(300)).await;
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn a_node_cut_off_from_redis_asks_its_clients_to_reconnect() {
    let redis = Redis::start().await;
    let mut c = common::config();
    c.redis_url = Some(redis.url());
    c.redis_timeout_secs = 1.0;
    let one = common::TestServer::start(c).await;
    let mut a = one.client().await;
    a.join(Mode::Text, &[]).await;
    let cut = Instant::now();
    drop(redis);
    assert_eq!(a.expect_close().await, protocol::close::SERVICE_RESTART);
    let after = cut.elapsed();
    assert!(after >= Duration::from_secs(1), "not before the timeout ({after:?})");
    assert!(one.exit().await.is_err(), "the node exits with an error for its supervisor");
}

#[tokio::test]
async fn redis_restarting_empty_during_200_chats_ends_none_and_the_waiting_keep_their_place() {
    let mut redis = Redis::start().await;
    let matcher = MatcherProcess::start(&redis, LEASE_MS, 5.0);
    matcher.wait_active(&redis, WAIT).await;
    let (one, two) = (node(&redis).await, node(&redis).await);
    let mut chats = Vec::new();
    for _ in 0..200 {
        let (mut a, mut b) = (one.client().await, two.client().await);
        a.join(Mode::Text, &[]).await;
        b.join(Mode::Text, &[]).await;
        let id = a.matched().await.id;
        assert_eq!(b.matched().await.id, id);
        chats.push((a, b, id));
    }
    let mut waiting = one.client().await;
    waiting.join(Mode::Video, &[]).await;
    one.wait_stats(|s| s.waiting == 1).await;

    redis.restart_empty().await;
    let restarted = Instant::now();
    // Every chat goes on, both ways, across the nodes.
    for (a, b, id) in chats.iter_mut() {
        a.send(&ClientMsg::Chat { match_id: *id, text: "still there?".into() }).await;
        b.send(&ClientMsg::Chat { match_id: *id, text: "yes".into() }).await;
    }
    for (a, b, id) in chats.iter_mut() {
        assert_eq!(b.recv().await, ServerMsg::Chat { match_id: *id, text: "still there?".into() });
        assert_eq!(a.recv().await, ServerMsg::Chat { match_id: *id, text: "yes".into() });
    }
    let chats_back = restarted.elapsed();
    // The one who waited is back in the (rebuilt) queue: a newcomer on the other node
    // is paired with them.
    let mut newcomer = two.client().await;
    newcomer.join(Mode::Video, &[]).await;
    let m =
        tokio::time::timeout(Duration::from_secs(10), waiting.matched()).await.expect("the waiting user is matched");
    assert_eq!(newcomer.matched().await.id, m.id);
    let requeued = restarted.elapsed();
    for (a, b, _) in chats.iter_mut() {
        a.expect_silence(Duration::from_millis(1)).await;
        b.expect_silence(Duration::from_millis(1)).await;
    }
    eprintln!(
        "after an empty restart: {} chats relayed again within {chats_back:?}; the waiting user matched {requeued:?} after it",
        chats.len()
    );
    one.stop().await;
    two.stop().await;
}

/// A pair matched across two node processes, both `ready`, one line relayed each way.
async fn chatting_across(one: &NodeProcess, two: &NodeProcess) -> (Client, Client, MatchId) {
    let (mut a, mut b) = (Client::connect(&one.url()).await, Client::connect(&two.url()).await);
    a.join(Mode::Video, &[]).await;
    b.join(Mode::Video, &[]).await;
    let id = a.matched().await.id;
    assert_eq!(b.matched().await.id, id);
    a.send(&ClientMsg::Ready { match_id: id }).await;
    b.send(&ClientMsg::Ready { match_id: id }).await;
    a.send(&ClientMsg::Chat { match_id: id, text: "hi".into() }).await;
    assert_eq!(b.recv().await, ServerMsg::Chat { match_id: id, text: "hi".into() });
    (a, b, id)
}

/// `a` resumes on `node` with its token: the same session and match, a new generation;
/// its peer `b` is told; a line crosses each way.
async fn resumes_on(node: &NodeProcess, a: &Client, b: &mut Client, id: MatchId) -> Client {
    let mut back = Client::connect(&node.resume_url(&a.token)).await;
    assert!(back.resumed, "the session is resumed on the other node");
    assert_eq!(back.session, a.session);
    let m = back.matched().await;
    assert_eq!(m.id, id, "the same match");
    assert_eq!(b.recv().await, ServerMsg::PeerResumed { match_id: id, generation: Some(1) });
    back.send(&ClientMsg::Chat { match_id: id, text: "back".into() }).await;
    assert_eq!(b.recv().await, ServerMsg::Chat { match_id: id, text: "back".into() });
    b.send(&ClientMsg::Chat { match_id: id, text: "welcome back".into() }).await;
    assert_eq!(back.recv().await, ServerMsg::Chat { match_id: id, text: "welcome back".into() });
    back
}

#[tokio::test]
async fn a_killed_nodes_users_resume_their_chats_on_another_node() {
    let redis = Redis::start().await;
    let matcher = MatcherProcess::start(&redis, LEASE_MS, 5.0);
    matcher.wait_active(&redis, WAIT).await;
    let (one, two) = (NodeProcess::start(&redis, &[]).await, NodeProcess::start(&redis, &[]).await);
    let three = NodeProcess::start(&redis, &[]).await;
    let (a, mut b, id) = chatting_across(&one, &two).await;
    one.signal("-KILL");
    let killed = Instant::now();
    // The peer hears that the stranger is reconnecting once the node's heartbeat lapses.
    let told = b.recv_within(Duration::from_secs(15)).await;
    assert_eq!(told, ServerMsg::PeerReconnecting { match_id: id });
    let noticed = killed.elapsed();
    // On a third node: everything between the two sides crosses Redis.
    let a = resumes_on(&three, &a, &mut b, id).await;
    let resumed = killed.elapsed();
    drop(a);
    eprintln!(
        "kill -9 of a node mid-chat: peer told after {noticed:?}; chat resumed on the other node {resumed:?} after the kill"
    );
}

#[tokio::test]
async fn a_draining_nodes_users_resume_on_another_node_and_no_chat_ends() {
    let redis = Redis::start().await;
    let matcher = MatcherProcess::start(&redis, LEASE_MS, 5.0);
    matcher.wait_active(&redis, WAIT).await;
    let (mut one, two) = (NodeProcess::start(&redis, &[]).await, NodeProcess::start(&redis, &[]).await);
    let (mut a, mut b, id) = chatting_across(&one, &two).await;
    // A waiting user on the draining node keeps their place too.
    let mut w = Client::connect(&one.url()).await;
    w.join(Mode::Text, &["chess"]).await;
    one.signal("-TERM");
    assert_eq!(a.expect_close().await, protocol::close::SERVICE_RESTART);
    assert_eq!(w.expect_close().await, protocol::close::SERVICE_RESTART);
    assert_eq!(b.recv().await, ServerMsg::PeerReconnecting { match_id: id });
    assert!(one.wait().success(), "the drained node exits cleanly");
    let _a = resumes_on(&two, &a, &mut b, id).await;
    let mut w2 = Client::connect(&two.resume_url(&w.token)).await;
    assert!(w2.resumed);
    assert_eq!(w2.recv().await, ServerMsg::Queued { mode: Mode::Text });
    // Still waiting, cluster-wide: a newcomer sharing the interest meets them.
    let mut c = Client::connect(&two.url()).await;
    c.join(Mode::Text, &["chess"]).await;
    assert_eq!(w2.matched().await.id, c.matched().await.id);
}

#[tokio::test]
async fn a_token_resumes_on_exactly_one_node() {
    let redis = Redis::start().await;
    let matcher = MatcherProcess::start(&redis, LEASE_MS, 5.0);
    matcher.wait_active(&redis, WAIT).await;
    let nodes = [
        NodeProcess::start(&redis, &[]).await,
        NodeProcess::start(&redis, &[]).await,
        NodeProcess::start(&redis, &[]).await,
    ];
    let (a, mut b, id) = chatting_across(&nodes[0], &nodes[1]).await;
    let token = a.token.clone();
    a.drop_connection();
    assert_eq!(b.recv().await, ServerMsg::PeerReconnecting { match_id: id });
    // The same token at the two other nodes at once: one resumes, the other starts a
    // new session; the old node lets go of it.
    let (url_b, url_c) = (nodes[1].resume_url(&token), nodes[2].resume_url(&token));
    let (x, y) = tokio::join!(Client::connect(&url_b), Client::connect(&url_c));
    assert_eq!(u8::from(x.resumed) + u8::from(y.resumed), 1, "exactly one node wins the token");
    assert_eq!(b.recv().await, ServerMsg::PeerResumed { match_id: id, generation: Some(1) });
    b.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_block_keeps_two_apart_across_nodes() {
    let redis = Redis::start().await;
    let matcher = MatcherProcess::start(&redis, LEASE_MS, 5.0);
    matcher.wait_active(&redis, WAIT).await;
    let (one, two) = (node(&redis).await, node(&redis).await);
    let (mut a, mut b) = (one.client().await, two.client().await);
    a.join(Mode::Text, &[]).await;
    b.join(Mode::Text, &[]).await;
    let id = a.matched().await.id;
    b.matched().await;
    a.send(&ClientMsg::Block { match_id: id }).await;
    assert_eq!(b.recv().await, ServerMsg::PeerLeft { match_id: id, reason: LeftReason::Skipped });
    // Both look again: never each other, however long they wait (the cooldown of a
    // `next` would be over after a minute; a block is for good).
    a.join(Mode::Text, &[]).await;
    b.join(Mode::Text, &[]).await;
    a.expect_silence(Duration::from_millis(1500)).await;
    b.expect_silence(Duration::from_millis(10)).await;
    let mut c = one.client().await;
    c.join(Mode::Text, &[]).await;
    let mc = c.matched().await.id;
    let first = tokio::time::timeout(WAIT, async {
        tokio::select! { m = a.matched() => m.id, m = b.matched() => m.id }
    })
    .await
    .expect("a newcomer meets one of them");
    assert_eq!(first, mc);
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn a_second_tab_on_another_node_replaces_the_first() {
    let redis = Redis::start().await;
    let matcher = MatcherProcess::start(&redis, LEASE_MS, 5.0);
    matcher.wait_active(&redis, WAIT).await;
    let (one, two) = (node(&redis).await, node(&redis).await);
    let (mut a, mut b) = (one.client().await, two.client().await);
    a.join(Mode::Video, &[]).await;
    b.join(Mode::Video, &[]).await;
    let id = a.matched().await.id;
    b.matched().await;
    // The same session's token, presented at the other node while the first socket is
    // still open: the newer one takes the session, the older is closed as replaced.
    let mut tab = two.resume(&a.token).await;
    assert!(tab.resumed);
    assert_eq!(tab.session, a.session);
    assert_eq!(tab.matched().await.id, id);
    assert_eq!(a.expect_close().await, protocol::close::REPLACED);
    assert_eq!(b.recv().await, ServerMsg::PeerResumed { match_id: id, generation: Some(1) });
    one.wait_stats(|s| s.sessions == 0).await; // let go on the first node
    tab.send(&ClientMsg::Chat { match_id: id, text: "same me".into() }).await;
    assert_eq!(b.recv().await, ServerMsg::Chat { match_id: id, text: "same me".into() });
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn behind_haproxy_a_killed_node_and_then_a_drained_one_end_no_chat() {
    let redis = Redis::start().await;
    let matcher = MatcherProcess::start(&redis, LEASE_MS, 5.0);
    matcher.wait_active(&redis, WAIT).await;
    let behind = ["--trusted-proxies", "127.0.0.1", "--drain-delay-secs", "3"];
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(NodeProcess::start(&redis, &behind).await);
    }
    let lb = Haproxy::start([nodes[0].addr, nodes[1].addr, nodes[2].addr]).await;
    // Which node holds whom: the one whose session count rose.
    async fn counts(nodes: &[NodeProcess]) -> Vec<f64> {
        let mut c = Vec::new();
        for n in nodes {
            c.push(n.gauge("letsmeet_sessions").await);
        }
        c
    }
    async fn placed(nodes: &[NodeProcess], before: &[f64]) -> usize {
        let deadline = Instant::now() + WAIT;
        loop {
            let now = counts(nodes).await;
            if let Some(i) = (0..nodes.len()).find(|&i| now[i] > before[i]) {
                return i;
            }
            assert!(Instant::now() < deadline, "no node counted the new session");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let a_from = [127, 0, 0, 2];
    let before = counts(&nodes).await;
    let mut a = lb.connect(a_from, None).await.expect("through HAProxy");
    let a_node = placed(&nodes, &before).await;
    // A stranger from an address the balancer hashes to another node.
    let (mut b, b_from, b_node) = {
        let mut source = 3u8;
        loop {
            let before = counts(&nodes).await;
            let c = lb.connect([127, 0, 0, source], None).await.expect("through HAProxy");
            let at = placed(&nodes, &before).await;
            if at != a_node {
                break (c, [127, 0, 0, source], at);
            }
            c.close().await;
            source += 1;
            assert!(source < 60, "every address hashed to one node");
        }
    };
    a.join(Mode::Video, &[]).await;
    b.join(Mode::Video, &[]).await;
    let id = a.matched().await.id;
    assert_eq!(b.matched().await.id, id);

    // kill -9 a's node: a reconnects through HAProxy, which sends it to a live node.
    let a_token = a.token.clone();
    nodes[a_node].signal("-KILL");
    let killed = Instant::now();
    drop(a);
    let mut a = lb.reconnect(a_from, &a_token).await;
    assert!(a.resumed, "resumed on a live node");
    assert_eq!(a.matched().await.id, id);
    let mut told = b.recv().await;
    if told == (ServerMsg::PeerReconnecting { match_id: id }) {
        told = b.recv().await;
    }
    assert_eq!(told, ServerMsg::PeerResumed { match_id: id, generation: Some(1) });
    let after_kill = killed.elapsed();
    a.send(&ClientMsg::Chat { match_id: id, text: "moved".into() }).await;
    assert_eq!(b.recv().await, ServerMsg::Chat { match_id: id, text: "moved".into() });
    // Then b's node drains: b is asked to reconnect and resumes elsewhere too.
    let b_token = b.token.clone();
    nodes[b_node].signal("-TERM");
    let drained = Instant::now();
    assert_eq!(b.expect_close_within(Duration::from_secs(10)).await, protocol::close::SERVICE_RESTART);
    assert_eq!(a.recv().await, ServerMsg::PeerReconnecting { match_id: id });
    let mut b = lb.reconnect(b_from, &b_token).await;
    assert!(b.resumed, "resumed after the drain");
    assert_eq!(b.matched().await.id, id);
    assert_eq!(a.recv().await, ServerMsg::PeerResumed { match_id: id, generation: Some(2) });
    b.send(&ClientMsg::Chat { match_id: id, text: "me too".into() }).await;
    assert_eq!(a.recv().await, ServerMsg::Chat { match_id: id, text: "me too".into() });
    eprintln!(
        "behind HAProxy: chat back {after_kill:?} after a kill -9 of one side's node; {:?} after the drain of the other's began (3 s delay)",
        drained.elapsed()
    );
    a.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn redis_frozen_past_the_lease_pairs_nobody_twice() {
    let redis = Redis::start().await;
    let first = MatcherProcess::start(&redis, LEASE_MS, 3.0);
    first.wait_active(&redis, WAIT).await;
    let standby = MatcherProcess::start(&redis, LEASE_MS, 3.0);
    let (one, two) = (node(&redis).await, node(&redis).await);
    let mut users = waiting_users([&one, &two], 40).await;
    let epoch_before: u64 = redis.get(matcher::store::EPOCH).await.unwrap().parse().unwrap();
    // Redis stops answering anyone for 2.5 lease periods: the lease runs out while the
    // active matcher holds it, and both matchers queue up behind the sleep.
    let patient = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(10)));
    let client = redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection_with_config(&patient).await.unwrap();
    let _: () = redis::cmd("DEBUG").arg("SLEEP").arg(2.5).query_async(&mut con).await.unwrap();
    // Whoever holds the lease afterwards pairs everyone, once.
    let per_match = all_matched(&mut users).await;
    assert_eq!(per_match.len(), 20);
    for u in users.iter_mut() {
        u.expect_silence(Duration::from_millis(20)).await;
    }
    let active = u8::from(first.is_active(&redis).await) + u8::from(standby.is_active(&redis).await);
    assert_eq!(active, 1, "one matcher holds the lease");
    let epoch_after: u64 = redis.get(matcher::store::EPOCH).await.unwrap().parse().unwrap();
    eprintln!(
        "DEBUG SLEEP 2.5 s: epoch {epoch_before} -> {epoch_after}; the first matcher's log after:\n{}",
        first.log_text()
    );
    one.stop().await;
    two.stop().await;
}

/// Whether a plain request from `from` to `to` gets any answer: a banned address is
/// closed (by a node at accept, by HAProxy at its first packet) before any byte of one.
async fn answered(from: [u8; 4], to: std::net::SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut tcp) = common::try_tcp_from(from, to).await else { return false };
    let _ = tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut answer)).await;
    !answer.is_empty()
}

/// Polls until `from` is refused by `to` (or, with `refused` false, answered again);
/// how long that took.
async fn until_refused(from: [u8; 4], to: std::net::SocketAddr, refused: bool, since: Instant) -> Duration {
    while answered(from, to).await == refused {
        assert!(since.elapsed() < Duration::from_secs(10), "{to} never changed its mind about {from:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    since.elapsed()
}

/// One command on HAProxy's runtime API socket; its answer.
async fn haproxy_api(socket: &std::path::Path, command: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::UnixStream::connect(socket).await else { return String::new() };
    let _ = s.write_all(format!("{command}\n").as_bytes()).await;
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer).await;
    answer
}

/// The `dcon` column (connections denied by `tcp-request connection` rules) of the
/// `letsmeet` frontend in `show stat`'s CSV.
fn frontend_denied(stat: &str) -> u64 {
    let mut lines = stat.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().trim_start_matches("# ").split(',').collect();
    let column = header.iter().position(|h| *h == "dcon").expect("show stat has dcon");
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&"letsmeet") && f.get(1) == Some(&"FRONTEND"))
        .and_then(|f| f.get(column)?.parse().ok())
        .expect("the letsmeet frontend's row")
}

async fn admin(node: &NodeProcess, method: &str, path: &str, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(node.metrics).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer secret\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test]
async fn a_ban_on_one_node_is_enforced_by_every_node_and_by_haproxy_within_a_second() {
    let redis = Redis::start().await;
    let files = Haproxy::files();
    let (admin_sock, ban_file) = (files.admin.to_str().unwrap(), files.ban_file.to_str().unwrap());
    let behind = ["--trusted-proxies", "127.0.0.1", "--admin-token", "secret"];
    let syncing = [&behind[..], &["--haproxy-socket", admin_sock, "--haproxy-ban-file", ban_file]].concat();
    let one = NodeProcess::start(&redis, &syncing).await;
    let two = NodeProcess::start(&redis, &behind).await;
    let three = NodeProcess::start(&redis, &behind).await;
    let lb = Haproxy::start_with(files.clone(), [one.addr, two.addr, three.addr]).await;
    let who = [127, 0, 7, 7];
    let mut c = common::Client::connect_from(who, two.addr).await;
    assert!(answered(who, three.addr).await && answered(who, lb.addr).await);

    let issued = Instant::now();
    let answer = admin(&one, "POST", "/admin/bans", r#"{"address":"127.0.7.7","reason":"test ban"}"#).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    // The session on node two is ended, and nodes two and three refuse the address.
    let ServerMsg::Banned { reason, .. } = c.recv().await else { panic!("banned on node two") };
    assert_eq!(reason, "test ban");
    assert_eq!(c.expect_close().await, protocol::close::BANNED);
    let to_two = until_refused(who, two.addr, true, issued).await;
    let to_three = until_refused(who, three.addr, true, issued).await;
    // HAProxy's own ACL holds it (its runtime API says so), and the list file too.
    let acl = format!("show acl {ban_file}");
    while !haproxy_api(&files.admin, &acl).await.contains("127.0.7.7") {
        assert!(issued.elapsed() < Duration::from_secs(5), "HAProxy's ACL never got the ban");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let to_haproxy = issued.elapsed();
    eprintln!("ban propagation: node two {to_two:?}, node three {to_three:?}, HAProxy's ACL {to_haproxy:?}");
    for (what, took) in [("node two", to_two), ("node three", to_three), ("HAProxy", to_haproxy)] {
        assert!(took < Duration::from_secs(1), "{what} took {took:?}");
    }
    assert!(std::fs::read_to_string(&files.ban_file).unwrap().lines().any(|l| l == "127.0.7.7"), "the file keeps it");
    // Refused by HAProxy itself: its frontend counts the connection as denied, and no
    // node sees it.
    let denied = || async { frontend_denied(&haproxy_api(&files.admin, "show stat").await) };
    let before = denied().await;
    assert!(!answered(who, lb.addr).await);
    assert_eq!(denied().await, before + 1, "HAProxy's tcp-request rule refused it");
    assert!(answered([127, 0, 7, 8], lb.addr).await, "others pass");

    // A node started later enforces the bans in force from its first connection.
    let four = NodeProcess::start(&redis, &behind).await;
    assert!(!answered(who, four.addr).await, "a new node loaded the ban set");

    // Lifted on node one: everyone lets the address in again.
    let lifted = Instant::now();
    assert!(admin(&one, "DELETE", "/admin/bans/127.0.7.7", "").await.starts_with("HTTP/1.1 200"));
    for to in [two.addr, three.addr, four.addr, lb.addr] {
        let took = until_refused(who, to, false, lifted).await;
        assert!(took < Duration::from_secs(1), "{to} took {took:?} to let the address in again");
    }
    assert!(!std::fs::read_to_string(&files.ban_file).unwrap().contains("127.0.7.7"));
}

#[tokio::test]
async fn reports_from_users_on_different_nodes_add_up_to_a_ban() {
    let redis = Redis::start().await;
    let _matcher = MatcherProcess::start(&redis, LEASE_MS, 5.0);
    let args = ["--report-threshold", "2", "--admin-token", "secret"];
    let one = NodeProcess::start(&redis, &args).await;
    let two = NodeProcess::start(&redis, &args).await;
    let suspect = [127, 0, 8, 1];
    let mut t = Client::connect_from(suspect, one.addr).await;
    t.join(Mode::Text, &[]).await;
    // One reporter on each node: neither node alone holds two reports.
    for (n, (from, node)) in [([127, 0, 8, 2], &one), ([127, 0, 8, 3], &two)].into_iter().enumerate() {
        let mut r = Client::connect_from(from, node.addr).await;
        r.join(Mode::Text, &[]).await;
        let m = r.matched().await.id;
        assert!(matches!(t.recv().await, ServerMsg::Matched { .. }));
        r.send(&ClientMsg::Report { match_id: m, reason: protocol::ReportReason::Harassment }).await;
        if n == 0 {
            r.send(&ClientMsg::Stop).await;
            assert!(matches!(t.recv().await, ServerMsg::PeerLeft { .. }));
            // The first report has reached node two before the second is made there.
            tokio::time::sleep(Duration::from_millis(300)).await;
            t.send(&ClientMsg::Next).await;
            assert!(matches!(t.recv().await, ServerMsg::Queued { .. }));
        } else {
            let ServerMsg::Banned { reason, .. } = t.recv().await else { panic!("the second node's report bans") };
            assert_eq!(reason, "reported by other users");
            assert_eq!(t.expect_close().await, protocol::close::BANNED);
            assert_eq!(r.recv().await, ServerMsg::PeerLeft { match_id: m, reason: LeftReason::Banned });
        }
    }
    // Issued once, by node two (the node where the deciding report was made).
    let list = admin(&one, "GET", "/admin/bans", "").await;
    assert!(list.contains(r#""kind":"reports""#) && list.contains(r#""strike":1"#), "{list}");
    assert!(!answered(suspect, one.addr).await && !answered(suspect, two.addr).await);
}

/// Polls (every 100 ms, up to `within`) until `done` holds; how long that took.
async fn eventually<F: std::future::Future<Output = bool>>(
    within: Duration,
    what: &str,
    done: impl Fn() -> F,
) -> Duration {
    let since = Instant::now();
    while !done().await {
        assert!(since.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    since.elapsed()
}

#[tokio::test]
async fn bans_redis_lost_are_written_back_and_a_missed_lift_is_caught_up() {
    let mut redis = Redis::start().await;
    let args = ["--admin-token", "secret"];
    let one = NodeProcess::start(&redis, &args).await;
    let two = NodeProcess::start(&redis, &args).await;
    let (kept, lifted) = ([127, 0, 9, 1], [127, 0, 9, 2]);
    for address in ["127.0.9.1", "127.0.9.2"] {
        let answer = admin(&one, "POST", "/admin/bans", &format!(r#"{{"address":"{address}"}}"#)).await;
        assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    }
    until_refused(lifted, two.addr, true, Instant::now()).await;

    // A record that never reached Redis (a write that failed, a change the writer
    // missed) is written back by the next sync, and so is everything after Redis
    // restarted empty.
    let mut con = redis.connection().await.unwrap();
    let _: () = redis::pipe().del("lm:ban:127.0.9.1").srem("lm:bans", "127.0.9.1").query_async(&mut con).await.unwrap();
    let back = eventually(Duration::from_secs(15), "a record Redis lacked written back", || async {
        redis.get("lm:ban:127.0.9.1").await.is_some()
    })
    .await;
    eprintln!("a record Redis lacked was written back after {back:?}");
    redis.restart_empty().await;
    let back = eventually(Duration::from_secs(15), "bans written back", || async {
        redis.get("lm:ban:127.0.9.1").await.is_some() && redis.get("lm:ban:127.0.9.2").await.is_some()
    })
    .await;
    eprintln!("bans written back {back:?} after Redis restarted empty");

    // A lift that reached Redis but not the nodes (as a node writes it, without its
    // entry in the change stream): the syncs catch up, and nobody writes it back.
    let mut con = redis.connection().await.unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let _: () = redis::pipe()
        .atomic()
        .del("lm:ban:127.0.9.2")
        .srem("lm:bans", "127.0.9.2")
        .set("lm:bans:lifted:127.0.9.2", now)
        .query_async(&mut con)
        .await
        .unwrap();
    let caught_up = eventually(Duration::from_secs(15), "the missed lift caught up", || async {
        answered(lifted, one.addr).await && answered(lifted, two.addr).await
    })
    .await;
    eprintln!("a missed lift caught up after {caught_up:?}");
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert!(redis.get("lm:ban:127.0.9.2").await.is_none(), "the lifted ban is not written back");
    assert!(answered(lifted, one.addr).await && answered(lifted, two.addr).await);
    assert!(!answered(kept, one.addr).await && !answered(kept, two.addr).await, "the other ban holds");

    // A lift whose deletion did not reach Redis: the lifting node deletes it again, and
    // the other node follows.
    assert!(admin(&one, "DELETE", "/admin/bans/127.0.9.1", "").await.starts_with("HTTP/1.1 200"));
    until_refused(kept, two.addr, false, Instant::now()).await;
    let record =
        r#"{"key":"127.0.9.1","kind":"admin","reason":"stale","since_ms":1,"until_ms":99999999999999,"strike":1}"#;
    let _: () = redis::pipe()
        .set("lm:ban:127.0.9.1", record)
        .sadd("lm:bans", "127.0.9.1")
        .del("lm:bans:lifted:127.0.9.1")
        .query_async(&mut con)
        .await
        .unwrap();
    eventually(Duration::from_secs(15), "the stale record deleted again", || async {
        redis.get("lm:ban:127.0.9.1").await.is_none()
    })
    .await;
    assert!(answered(kept, one.addr).await, "the node that lifted it never took it back");
}
