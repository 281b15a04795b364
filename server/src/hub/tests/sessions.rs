//! Sessions (rule 4): welcome, grace to the millisecond, resume, replacement with
//! 4001, the per-address cap; and online counts, reports and drain.

use super::*;
use crate::ice::IceConfig;
use protocol::{LeftReason, OnlineCounts, ReportReason, close};
use std::time::Duration;

#[test]
fn turn_credentials_come_with_matched_only_from_the_injected_clock() {
    let ice = IceConfig {
        stun_urls: vec!["stun:127.0.0.1:3478".into()],
        turn_urls: vec!["turn:127.0.0.1:3478".into()],
        secret: Some("0123456789abcdef".parse().unwrap()),
        ttl: Duration::from_secs(3_600),
    };
    let mut h = Harness::new(HubConfig { ice, ..HubConfig::default() });
    h.advance(10_000);
    let (conn, welcome) = h.open(ip(1), None);
    let ServerMsg::Welcome {
        session_id,
        resume_token,
        resumed,
        ice_servers,
        online,
        protocol,
        relay,
        country,
        moderation,
    } = welcome
    else {
        panic!()
    };
    assert_eq!((protocol, resumed, online, relay), (1, false, OnlineCounts { count: 1, chatting: 0 }, true));
    assert_eq!(country, None, "the IP database does not know this address");
    assert_eq!(moderation, None, "no moderation: no frames asked for");
    assert_ne!(session_id.0, resume_token.0, "the token is not the session id");
    // A socket that never joins collects no TURN credentials: STUN only.
    assert_eq!(ice_servers.len(), 1);
    assert!(ice_servers.iter().all(|s| s.username.is_none() && s.credential.is_none()), "{ice_servers:?}");
    let a = Client { conn, session: session_id, token: resume_token };
    let b = h.connect();
    h.join_video(&a);
    h.advance(5_000);
    h.join_video(&b);
    let ServerMsg::Matched { ice_servers: Some(ice_servers), generation: Some(0), .. } = h.recv(a.conn) else {
        panic!("matched brings TURN credentials")
    };
    let expiry = UNIX_AT_ZERO + 15 + 3_600;
    assert_eq!(ice_servers[1].username, Some(format!("{expiry}:{session_id}")));
}

#[test]
fn a_dropped_session_is_held_for_exactly_the_grace_period() {
    let mut h = Harness::defaults();
    let (a, b, id) = h.pair();
    h.drop_conn(&a);
    assert_eq!(h.recv(b.conn), ServerMsg::PeerReconnecting { match_id: id });
    h.advance(14_999);
    h.silent(&b);
    assert_eq!(h.stats().grace_timers, 1);
    h.advance(1);
    assert_eq!(h.recv(b.conn), ServerMsg::PeerLeft { match_id: id, reason: LeftReason::Disconnected });
    let (late, resumed) = h.resume(&a.token);
    assert!(!resumed, "an expired token starts a new session");
    assert_ne!(late.session, a.session);
    let stats = h.stats();
    assert_eq!((stats.sessions, stats.tokens, stats.grace_timers, stats.in_match), (2, 2, 0, 0));
}

#[test]
fn a_resume_within_the_grace_period_restores_the_match() {
    let mut h = Harness::defaults();
    let (a, b, id) = h.pair();
    h.drop_conn(&a);
    h.take(b.conn);
    h.advance(14_999);
    let (a2, resumed) = h.resume(&a.token);
    assert!(resumed);
    assert_eq!(a2.session, a.session);
    assert_eq!(h.matched(&a2), (id, Role::Offerer, vec![]));
    assert_eq!(h.recv(b.conn), ServerMsg::PeerResumed { match_id: id, generation: Some(1) });
    // Both start new peer connections and say so.
    h.send(&a2, ClientMsg::Ready { match_id: id });
    h.send(&b, ClientMsg::Ready { match_id: id });
    h.advance(60_000);
    h.silent(&b);
    assert_eq!(h.stats().grace_timers, 0);
}

#[test]
fn a_second_socket_replaces_the_first_with_4001_and_the_first_one_s_late_close_changes_nothing() {
    let mut h = Harness::defaults();
    let (a, b, id) = h.pair();
    let (a2, resumed) = h.resume(&a.token);
    assert!(resumed);
    assert_eq!(h.closed.get(&a.conn), Some(&close::REPLACED));
    assert_eq!(h.matched(&a2).0, id);
    assert_eq!(h.recv(b.conn), ServerMsg::PeerResumed { match_id: id, generation: Some(1) });
    assert_eq!(h.stats().live_sockets, 2, "never two sockets for one session");
    // The replaced socket's close arrives afterwards: the session stays live.
    h.drop_conn(&a);
    h.silent(&b);
    let stats = h.stats();
    assert_eq!((stats.live_sockets, stats.grace_timers, stats.away), (2, 0, 0));
    h.send(&a2, ClientMsg::Chat { match_id: id, text: "new tab".into() });
    assert_eq!(h.recv(b.conn), ServerMsg::Chat { match_id: id, text: "new tab".into() });
}

#[test]
fn a_queued_session_leaves_the_pool_while_away_and_keeps_its_place() {
    let mut h = Harness::defaults();
    let a = h.connect();
    h.join(&a, Preferences::new(Mode::Text));
    h.drop_conn(&a);
    assert_eq!(h.stats().waiting, 0, "nobody is paired with an empty chair");
    let b = h.connect();
    h.advance(1_000);
    h.join(&b, Preferences::new(Mode::Text));
    h.silent(&b);
    let (a, _) = h.resume(&a.token);
    assert_eq!(h.first(a.conn), ServerMsg::Queued { mode: Mode::Text });
    assert_eq!(h.matched(&a).1, Role::Offerer, "a kept its earlier place");
}

#[test]
fn a_peer_left_while_away_is_told_on_resume() {
    let mut h = Harness::defaults();
    let (a, b, id) = h.pair();
    h.drop_conn(&a);
    h.take(b.conn);
    h.send(&b, ClientMsg::Next);
    let (a, _) = h.resume(&a.token);
    assert_eq!(h.take(a.conn), [ServerMsg::PeerLeft { match_id: id, reason: LeftReason::Skipped }]);
}

#[test]
fn an_address_holds_at_most_its_cap_of_sessions_and_the_longest_absent_ends_first() {
    let mut h = Harness::new(HubConfig { max_sessions_per_ip: 3, ..HubConfig::default() });
    let clients: Vec<Client> = (0..5)
        .map(|_| {
            let c = h.connect();
            h.drop_conn(&c);
            c
        })
        .collect();
    let stats = h.stats();
    assert_eq!((stats.sessions, stats.grace_timers, stats.addresses, stats.away, stats.tokens), (3, 3, 1, 3, 3));
    assert!(!h.resume(&clients[1].token).1, "the second oldest was ended too");
    let (back, resumed) = h.resume(&clients[4].token);
    assert!(resumed);
    for _ in 0..10 {
        h.drop_conn(&back);
        let (again, _) = h.resume(&back.token);
        h.drop_conn(&again);
        h.resume(&back.token);
    }
    // Another address is not affected.
    h.connect_from(ip(2));
    assert_eq!(h.stats().addresses, 2);
}

#[test]
fn everything_is_released_when_everyone_leaves() {
    let mut h = Harness::defaults();
    let (a, b, id) = h.pair();
    let c = h.connect();
    h.join(&c, interests(Mode::Text, &["x"]));
    h.send(&a, ClientMsg::Chat { match_id: id, text: "x".into() });
    h.send(&b, ClientMsg::Signal { match_id: id, payload: protocol::SignalPayload::EndOfCandidates, generation: None });
    for x in [&a, &b, &c] {
        h.drop_conn(x);
    }
    h.advance(15_000);
    let stats = h.stats();
    assert!(stats.is_empty(), "{stats:?}");
    assert_eq!(h.node.poll_timeout(), None, "no timer left either");
}

#[test]
fn online_counts_are_pushed_when_they_change_at_most_once_per_interval() {
    let mut h = Harness::defaults();
    let a = h.connect();
    assert_eq!(h.online.remove(&a.conn), Some(vec![OnlineCounts { count: 1, chatting: 0 }]));
    h.advance(200);
    let (_b, _c, _) = h.pair();
    assert_eq!(h.online.remove(&a.conn), None, "within the interval: held back");
    h.advance(799);
    assert_eq!(h.online.remove(&a.conn), None);
    h.advance(1);
    assert_eq!(h.online.remove(&a.conn), Some(vec![OnlineCounts { count: 3, chatting: 2 }]));
    h.advance(10_000);
    assert_eq!(h.online.remove(&a.conn), None, "no change, no push");
}

#[test]
fn reports_count_once_per_reporter_and_match_current_or_last() {
    let mut h = Harness::defaults();
    let (a, b, id) = h.pair();
    h.send(&a, ClientMsg::Report { match_id: id, reason: ReportReason::Spam });
    h.send(&b, ClientMsg::Next);
    h.take(a.conn);
    h.send(&b, ClientMsg::Report { match_id: id, reason: ReportReason::Harassment });
    for _ in 0..20 {
        h.send(&a, ClientMsg::Report { match_id: id, reason: ReportReason::Other });
    }
    assert_eq!(h.stats().reports, 2);
    h.send(&a, ClientMsg::Report { match_id: MatchId(Uuid::from_u128(999)), reason: ReportReason::Other });
    assert!(matches!(h.recv(a.conn), ServerMsg::Error { code: protocol::ErrorCode::StaleMatch, .. }));
    assert_eq!(h.metrics.iter().filter(|m| **m == Metric::Report).count(), 2);
}

#[test]
fn drain_asks_every_live_socket_to_reconnect() {
    let mut h = Harness::defaults();
    let (a, b, _) = h.pair();
    let away = h.connect();
    h.drop_conn(&away);
    h.input(Input::Drain);
    assert_eq!(h.closed, HashMap::from([(a.conn, close::SERVICE_RESTART), (b.conn, close::SERVICE_RESTART)]));
}
