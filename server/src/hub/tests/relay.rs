//! Relay: stale match ids (rule 1), signal buffering until `ready` (rule 2), chat and
//! typing, and what an absent receiver gets on its return.

use super::*;
use protocol::{ErrorCode, LeftReason, SignalPayload};

fn candidate(n: usize) -> SignalPayload {
    SignalPayload::Candidate {
        candidate: format!("candidate:{n}"),
        sdp_mid: Some("0".into()),
        sdp_m_line_index: Some(0),
    }
}

fn signal(match_id: MatchId, n: usize) -> ClientMsg {
    ClientMsg::Signal { match_id, payload: candidate(n), generation: None }
}

#[test]
fn signals_wait_for_ready_then_flow_in_order() {
    let mut h = Harness::defaults();
    let (a, b, id) = h.pair();
    h.send(&a, ClientMsg::Ready { match_id: id });
    for n in 0..5 {
        h.send(&a, signal(id, n));
    }
    h.silent(&b);
    assert_eq!(h.stats().buffered_signals, 5);
    h.send(&b, ClientMsg::Ready { match_id: id });
    let expected: Vec<_> =
        (0..5).map(|n| ServerMsg::Signal { match_id: id, payload: candidate(n), generation: None }).collect();
    assert_eq!(h.take(b.conn), expected);
    // a is ready: b's signals go straight through; ready twice flushes nothing.
    h.send(&b, signal(id, 9));
    assert_eq!(h.recv(a.conn), ServerMsg::Signal { match_id: id, payload: candidate(9), generation: None });
    h.send(&b, ClientMsg::Ready { match_id: id });
    h.silent(&b);
    assert_eq!(h.stats().buffered_signals, 0);
}

#[test]
fn the_signal_buffer_is_bounded_and_the_sender_is_told() {
    let mut config = HubConfig::default();
    config.inbox.signals = 4;
    let mut h = Harness::new(config);
    let (a, b, id) = h.pair();
    for n in 0..6 {
        h.send(&a, signal(id, n));
    }
    let refusals = h.take(a.conn);
    assert_eq!(refusals.len(), 2);
    assert!(
        refusals
            .iter()
            .all(|m| matches!(m, ServerMsg::Error { code: ErrorCode::RateLimited, match_id: Some(m), .. } if *m == id))
    );
    h.send(&b, ClientMsg::Ready { match_id: id });
    assert_eq!(h.take(b.conn).len(), 4);
}

#[test]
fn held_signals_are_dropped_when_the_match_ends() {
    let mut h = Harness::defaults();
    let (a, b, id) = h.pair();
    h.send(&a, signal(id, 1));
    h.send(&b, signal(id, 2));
    assert_eq!(h.stats().buffered_signals, 2);
    h.send(&a, ClientMsg::Stop);
    assert_eq!(h.stats().buffered_signals, 0, "both inboxes were emptied, whatever state each is in now");
    // A new match starts with an empty inbox.
    h.join_video(&a);
    assert_eq!(h.recv(b.conn), ServerMsg::PeerLeft { match_id: id, reason: LeftReason::Stopped });
    h.join_video(&b);
    let (new, _, _) = h.matched(&a);
    h.matched(&b);
    h.send(&b, ClientMsg::Ready { match_id: new });
    h.silent(&b);
}

#[test]
fn a_stale_match_id_is_refused_and_reaches_nobody() {
    let mut h = Harness::defaults();
    let (a, b, old) = h.pair();
    let bogus = MatchId(Uuid::from_u128(999));
    h.send(&a, ClientMsg::Chat { match_id: bogus, text: "x".into() });
    assert!(
        matches!(h.recv(a.conn), ServerMsg::Error { code: ErrorCode::StaleMatch, match_id: Some(m), .. } if m == bogus)
    );
    h.silent(&b);
    h.send(&a, ClientMsg::Next);
    h.take(a.conn);
    h.take(b.conn);
    let c = h.connect();
    h.join_video(&c);
    let (new, _, _) = h.matched(&a);
    h.matched(&c);
    for (who, id) in [(&b, old), (&a, old)] {
        h.send(who, ClientMsg::Chat { match_id: id, text: "come back".into() });
        assert!(matches!(h.recv(who.conn), ServerMsg::Error { code: ErrorCode::StaleMatch, .. }));
    }
    h.send(&b, ClientMsg::Ready { match_id: old });
    assert!(matches!(h.recv(b.conn), ServerMsg::Error { code: ErrorCode::StaleMatch, .. }));
    h.silent(&c);
    h.send(&c, ClientMsg::Chat { match_id: new, text: "hi".into() });
    assert_eq!(h.recv(a.conn), ServerMsg::Chat { match_id: new, text: "hi".into() });
    assert!(h.metrics.contains(&Metric::Dropped(super::super::io::Dropped::StaleMatch)));
}

#[test]
fn chat_and_typing_reach_the_peer_only() {
    let mut h = Harness::defaults();
    let (a, b, id) = h.pair();
    let (c, d, _) = h.pair();
    h.send(&a, ClientMsg::Typing { match_id: id, typing: true });
    h.send(&a, ClientMsg::Chat { match_id: id, text: "hello ✨".into() });
    assert_eq!(
        h.take(b.conn),
        [ServerMsg::Typing { match_id: id, typing: true }, ServerMsg::Chat { match_id: id, text: "hello ✨".into() }]
    );
    for other in [&a, &c, &d] {
        h.silent(other);
    }
}

#[test]
fn chat_sent_while_the_peer_is_away_is_delivered_on_its_return_and_typing_is_not() {
    let mut h = Harness::defaults();
    let (a, b, id) = h.pair();
    h.drop_conn(&a);
    assert_eq!(h.recv(b.conn), ServerMsg::PeerReconnecting { match_id: id });
    h.send(&b, ClientMsg::Typing { match_id: id, typing: true });
    for n in 0..52 {
        h.send(&b, ClientMsg::Chat { match_id: id, text: format!("line {n}") });
    }
    h.send(&b, signal(id, 7));
    let (a, resumed) = h.resume(&a.token);
    assert!(resumed);
    let got = h.take(a.conn);
    assert!(matches!(got[0], ServerMsg::Matched { match_id, role: Role::Offerer, .. } if match_id == id));
    let lines: Vec<_> = (2..52).map(|n| ServerMsg::Chat { match_id: id, text: format!("line {n}") }).collect();
    assert_eq!(got[1..], lines[..], "the latest 50 lines, in order; no typing; no stale signal");
    assert_eq!(h.recv(b.conn), ServerMsg::PeerResumed { match_id: id, generation: Some(1) });
    h.send(&a, ClientMsg::Chat { match_id: id, text: "back".into() });
    assert_eq!(h.recv(b.conn), ServerMsg::Chat { match_id: id, text: "back".into() });
}
