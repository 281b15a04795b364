//! What a hostile or broken client must not get away with: budgets that survive a
//! resume, stale signals after a resume, a match that never gets `ready`, tokens that
//! outlive their welcome, TURN credentials without a match.

use super::*;
use crate::ice::IceConfig;
use protocol::{ErrorCode, LeftReason, SignalPayload, close};
use std::time::Duration;

fn candidate(text: &str, generation: Option<u32>, match_id: MatchId) -> ClientMsg {
    let payload = SignalPayload::Candidate { candidate: text.into(), sdp_mid: None, sdp_m_line_index: None };
    ClientMsg::Signal { match_id, payload, generation }
}

fn chat(match_id: MatchId, n: usize) -> ClientMsg {
    ClientMsg::Chat { match_id, text: format!("line {n}") }
}

fn ready(h: &mut Harness, c: &Client, match_id: MatchId) {
    h.send(c, ClientMsg::Ready { match_id });
}

#[test]
fn every_welcome_rotates_the_token_and_the_old_one_dies() {
    let mut h = Harness::defaults();
    let a = h.connect();
    h.drop_conn(&a);
    let (a2, resumed) = h.resume(&a.token);
    assert!(resumed);
    assert_eq!(a2.session, a.session);
    assert_ne!(a2.token, a.token, "a resumed welcome carries a fresh token");
    h.drop_conn(&a2);
    let (stolen, resumed) = h.resume(&a.token);
    assert!(!resumed, "the token presented before is dead");
    assert_ne!(stolen.session, a.session);
    let (a3, resumed) = h.resume(&a2.token);
    assert!(resumed && a3.session == a.session, "the latest token works");
    assert_eq!(h.stats().tokens, 2, "one token per session");
}

#[test]
fn signals_from_before_a_resume_never_reach_the_new_peer_connection() {
    let mut h = Harness::defaults();
    let (a, b, id) = h.pair();
    ready(&mut h, &a, id);
    ready(&mut h, &b, id);
    // a's socket drops and comes back: its page starts a new peer connection.
    h.drop_conn(&a);
    assert_eq!(h.recv(b.conn), ServerMsg::PeerReconnecting { match_id: id });
    let (a2, _) = h.resume(&a.token);
    let ServerMsg::Matched { generation: Some(1), .. } = h.recv(a2.conn) else { panic!("matched, generation 1") };
    // b has not read `peer_resumed` yet: a candidate from its old connection, then
    // (after reading it) one from its new connection.
    h.send(&b, candidate("old", Some(0), id));
    assert_eq!(h.recv(b.conn), ServerMsg::PeerResumed { match_id: id, generation: Some(1) });
    h.send(&b, candidate("new", Some(1), id));
    ready(&mut h, &a2, id);
    let ServerMsg::Signal { payload: SignalPayload::Candidate { candidate: got, .. }, generation: Some(1), .. } =
        h.recv(a2.conn)
    else {
        panic!("only the new candidate")
    };
    assert_eq!(got, "new");
    // b's `ready` for its new connection counts (its flag was reset too): a's signals
    // wait for it, then flow.
    h.send(&a2, candidate("to-b", Some(1), id));
    h.silent(&b);
    ready(&mut h, &b, id);
    assert!(matches!(h.recv(b.conn), ServerMsg::Signal { generation: Some(1), .. }));
    // A stale signal after the fact goes nowhere, and says nothing.
    h.send(&b, candidate("late", Some(0), id));
    h.silent(&a2);
    h.silent(&b);
    assert!(h.metrics.contains(&Metric::Dropped(crate::hub::Dropped::StaleSignal)));
}

#[test]
fn a_match_without_ready_ends_after_the_ready_timeout_and_frees_its_buffer() {
    let mut h = Harness::defaults();
    let (a, b, id) = h.pair();
    ready(&mut h, &a, id);
    // b never says ready: what a sends is held for b...
    h.send(&a, candidate("held", None, id));
    assert_eq!(h.stats().buffered_signals, 1);
    h.advance(19_999);
    h.silent(&a);
    h.silent(&b);
    h.advance(1);
    // ...until the deadline: the match ends for both, and nothing stays held.
    let got = h.take(b.conn);
    assert!(matches!(got[0], ServerMsg::Error { code: ErrorCode::NotAllowed, .. }), "{got:?}");
    assert_eq!(got[1], ServerMsg::PeerLeft { match_id: id, reason: LeftReason::Disconnected });
    assert_eq!(h.recv(a.conn), ServerMsg::PeerLeft { match_id: id, reason: LeftReason::Disconnected });
    let stats = h.stats();
    assert_eq!((stats.in_match, stats.buffered_signals, stats.deadlines), (0, 0, 0));
    assert!(h.metrics.contains(&Metric::MatchEnded(crate::hub::Ended::NotReady)));
}

#[test]
fn a_resume_does_not_refill_the_message_budget_and_resumes_are_rationed() {
    let mut h = Harness::defaults();
    let (a, b, id) = h.pair();
    ready(&mut h, &a, id);
    ready(&mut h, &b, id);
    let mut token = a.token.clone();
    let mut conn = a.clone();
    let (mut delivered, mut resumed_seen, mut refused) = (0, 0, 0);
    // 20 cycles of {resume, 100 chats, drop}, all within the same millisecond.
    for cycle in 0..20 {
        for n in 0..100 {
            h.send(&conn, chat(id, cycle * 100 + n));
        }
        h.drop_conn(&conn);
        h.next_conn += 1;
        let next_conn = ConnId(h.next_conn);
        h.input(Input::Connect { conn: next_conn, ip: ip(1), country: None, resume: Some(token.clone()) });
        if let Some(code) = h.closed.get(&next_conn) {
            assert_eq!(*code, close::POLICY);
            refused += 1;
            continue;
        }
        let welcome = h.first(next_conn);
        let ServerMsg::Welcome { resume_token, resumed: true, session_id, .. } = welcome else { panic!("{welcome:?}") };
        token = resume_token.clone();
        conn = Client { conn: next_conn, session: session_id, token: resume_token };
        h.take(next_conn);
        for msg in h.take(b.conn) {
            match msg {
                ServerMsg::Chat { .. } => delivered += 1,
                ServerMsg::PeerResumed { .. } => resumed_seen += 1,
                _ => {}
            }
        }
    }
    // The burst of 100, less a's join and ready: one budget for the session, not one per socket.
    assert_eq!(delivered, 98);
    assert_eq!(resumed_seen, 5, "the resume burst");
    assert_eq!(refused, 15);
}

#[test]
fn turn_credentials_are_refreshed_before_they_expire() {
    let ice = IceConfig {
        stun_urls: vec![],
        turn_urls: vec!["turn:127.0.0.1:3478".into()],
        secret: Some("0123456789abcdef".parse().unwrap()),
        ttl: Duration::from_secs(600),
    };
    let mut h = Harness::new(HubConfig { ice, ..HubConfig::default() });
    let (a, b, id) = h.pair();
    ready(&mut h, &a, id);
    ready(&mut h, &b, id);
    h.advance(449_999);
    h.silent(&a);
    h.advance(1);
    for c in [&a, &b] {
        let ServerMsg::IceServers { match_id, ice_servers } = h.recv(c.conn) else { panic!("fresh servers") };
        assert_eq!(match_id, id);
        let expiry = UNIX_AT_ZERO + 450 + 600;
        assert_eq!(ice_servers[0].username, Some(format!("{expiry}:{}", c.session)));
    }
    // And again three quarters of a lifetime later, for as long as the match lasts.
    h.advance(450_000);
    assert!(matches!(h.recv(a.conn), ServerMsg::IceServers { .. }));
    h.send(&a, ClientMsg::Stop);
    h.take(b.conn);
    assert_eq!(h.stats().deadlines, 0, "the match's deadlines went with it");
}

#[test]
fn a_session_resumed_from_another_address_makes_room_there_like_a_new_one() {
    let mut h = Harness::new(HubConfig { max_sessions_per_ip: 2, ..HubConfig::default() });
    // Two sessions from ip 2, both away.
    let (x, y) = (h.connect_from(ip(2)), h.connect_from(ip(2)));
    h.drop_conn(&x);
    h.drop_conn(&y);
    // A session from ip 1 moves to ip 2 with its token.
    let a = h.connect_from(ip(1));
    h.drop_conn(&a);
    let (conn, welcome) = h.open(ip(2), Some(&a.token));
    assert!(matches!(welcome, ServerMsg::Welcome { resumed: true, .. }), "{welcome:?}");
    let _ = conn;
    let stats = h.stats();
    assert_eq!(stats.sessions, 2, "ip 2's longest-absent session made room");
    let (old, resumed) = h.resume(&x.token);
    assert!(!resumed, "the session that made room is gone");
    let _ = (old, y);
}

#[test]
fn a_session_that_re_joins_in_a_loop_searches_no_more_often_than_its_budget() {
    let mut h = Harness::defaults();
    let (a, b) = (h.connect(), h.connect());
    let searches = |h: &Harness| h.metrics.iter().filter(|m| **m == Metric::SearchDeferred).count();
    // 40 {stop, join with a fresh interest} in one second: every join is answered...
    for n in 0..40 {
        h.advance(25);
        h.send(&a, ClientMsg::Stop);
        h.send(&a, ClientMsg::Join(interests(Mode::Text, &[&format!("unique-{n}")])));
        assert_eq!(h.take(a.conn), [ServerMsg::Queued { mode: Mode::Text }]);
    }
    // ...but beyond the burst of 20 the searches wait for the budget (4 a second), one
    // pending at a time, instead of each searching the pool: a partner for the last
    // join's interest is not found at once...
    assert!(searches(&h) >= 2, "{} searches deferred", searches(&h));
    h.join(&b, interests(Mode::Text, &["unique-39"]));
    h.silent(&a);
    // ...but as soon as the budget allows, with the latest preferences.
    h.advance(1_000);
    assert_eq!(h.matched(&a).2, ["unique-39"]);
    assert_eq!(h.matched(&b).2, ["unique-39"]);
}

#[test]
fn what_a_peer_can_make_the_hub_hold_for_a_session_is_bounded_in_bytes() {
    let mut h = Harness::defaults();
    let (a, b, id) = h.pair();
    // b is away (and never ready): everything a sends is held for it, up to the bounds.
    h.drop_conn(&b);
    let limits = HubConfig::default().inbox;
    let big = "x".repeat(2_000);
    for n in 0..200 {
        h.send(&a, candidate(&big, None, id));
        h.send(&a, ClientMsg::Chat { match_id: id, text: format!("{n}{big}") });
        h.advance(40);
    }
    let held = h.node.inbox_bytes(b.session);
    assert!(held > limits.signal_bytes / 2, "the test fills the inbox ({held} bytes)");
    // Each signal frame here is under 2,200 bytes: the count bound holds them, and the
    // missed chat (50 lines of over 2 KB) is cut to its byte bound.
    assert!(held <= limits.signals * 2_200 + limits.missed_chat_bytes, "{held} bytes held");
}
