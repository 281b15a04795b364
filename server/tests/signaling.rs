//! PROTOCOL.md rules and matchmaking behaviour, one test each, against a real server.

mod common;

use common::*;
use protocol::*;
use std::time::Duration;

#[tokio::test]
async fn welcome_carries_fresh_ids_ice_servers_and_online_counts() {
    let mut cfg = config();
    cfg.stun_urls = vec!["stun:stun.example.org:3478".into()];
    let server = TestServer::start(cfg).await;
    let a = server.client().await;
    let b = server.client().await;
    let ServerMsg::Welcome {
        protocol,
        resumed,
        ice_servers,
        online,
        session_id,
        resume_token,
        relay,
        country,
        moderation: None,
    } = &b.welcome
    else {
        unreachable!()
    };
    assert_eq!(*country, None, "no IP database: no country");
    assert_eq!(*protocol, 1);
    assert!(!resumed);
    assert!(!relay, "no TURN configured");
    assert_ne!(*session_id, a.session);
    assert_ne!(resume_token.0, a.token.0);
    assert_ne!(session_id.0, resume_token.0, "the resume token is not the session id");
    assert_eq!(
        ice_servers,
        &vec![IceServer { urls: vec!["stun:stun.example.org:3478".into()], username: None, credential: None }]
    );
    assert_eq!(*online, OnlineCounts { count: 2, chatting: 0 });
    server.stop().await;
}

#[tokio::test]
async fn healthz_answers() {
    let server = TestServer::start(config()).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains(r#""status":"ok""#), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn two_joins_are_matched_with_roles_and_a_shared_match_id() {
    let server = TestServer::start(config()).await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.join_prefs(Preferences { country: Some("de".into()), ..Preferences::new(Mode::Text) }).await;
    b.join_prefs(Preferences { country: Some("FR".into()), ..Preferences::new(Mode::Text) }).await;
    let ma = a.matched().await;
    let mb = b.matched().await;
    assert_eq!(ma.id, mb.id);
    assert_eq!((ma.role, mb.role), (Role::Offerer, Role::Answerer));
    assert_eq!(ma.peer_country.as_deref(), Some("FR"));
    assert_eq!(mb.peer_country.as_deref(), Some("DE"), "countries are normalized");
    server.stop().await;
}

#[tokio::test]
async fn video_and_text_users_are_never_paired() {
    let server = TestServer::start(config()).await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.join(Mode::Video, &[]).await;
    b.join(Mode::Text, &[]).await;
    skip(Duration::from_secs(30)).await;
    a.expect_silence(Duration::from_millis(100)).await;
    assert_eq!(server.stats().await.waiting, 2);
    server.stop().await;
}

#[tokio::test]
async fn an_interest_match_is_preferred_over_an_earlier_waiter() {
    let server = TestServer::start(config()).await;
    let mut early = server.client().await;
    let mut music1 = server.client().await;
    let mut music2 = server.client().await;
    early.join(Mode::Video, &[]).await;
    music1.join(Mode::Video, &["Music", "Chess"]).await;
    music2.join(Mode::Video, &["chess", "go"]).await;
    let m1 = music1.matched().await;
    let m2 = music2.matched().await;
    assert_eq!(m1.id, m2.id);
    assert_eq!(m1.common_interests, vec!["chess"]);
    assert_eq!(m2.common_interests, vec!["chess"]);
    early.expect_silence(Duration::from_millis(100)).await;
    server.stop().await;
}

#[tokio::test]
async fn interests_fall_back_to_anyone_after_the_configured_wait() {
    let mut cfg = config();
    cfg.interest_fallback_secs = 3.0;
    let server = TestServer::start(cfg).await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.join(Mode::Text, &["music"]).await;
    b.join(Mode::Text, &["knitting"]).await;
    skip(Duration::from_millis(2_500)).await;
    a.expect_silence(Duration::from_millis(100)).await;
    skip(Duration::from_millis(500)).await;
    let m = a.matched().await;
    assert!(m.common_interests.is_empty());
    b.matched().await;
    server.stop().await;
}

#[tokio::test]
async fn same_country_is_honoured() {
    let server = TestServer::start(config()).await;
    let mut de = server.client().await;
    let mut fr = server.client().await;
    let mut de2 = server.client().await;
    let prefs = |c: &str, same: bool| Preferences {
        country: Some(c.into()),
        same_country: same,
        ..Preferences::new(Mode::Video)
    };
    de.join_prefs(prefs("DE", true)).await;
    fr.join_prefs(prefs("FR", false)).await;
    skip(Duration::from_secs(10)).await;
    de.expect_silence(Duration::from_millis(100)).await;
    de2.join_prefs(prefs("DE", false)).await;
    assert_eq!(de.matched().await.peer_country.as_deref(), Some("DE"));
    de2.matched().await;
    fr.expect_silence(Duration::from_millis(100)).await;
    server.stop().await;
}

#[tokio::test]
async fn next_requeues_the_skipper_idles_the_skipped_and_they_are_not_rematched_during_the_cooldown() {
    let server = TestServer::start(config()).await;
    let (mut a, mut b, id) = matched_pair(&server).await;
    a.send(&ClientMsg::Next).await;
    assert_eq!(a.recv().await, ServerMsg::Queued { mode: Mode::Video });
    assert_eq!(b.recv().await, ServerMsg::PeerLeft { match_id: id, reason: LeftReason::Skipped });
    // The skipped one is idle until it decides; then both wait, alone together.
    b.send(&ClientMsg::Next).await;
    assert_eq!(b.recv().await, ServerMsg::Queued { mode: Mode::Video });
    skip(Duration::from_secs(59)).await;
    a.expect_silence(Duration::from_millis(100)).await;
    skip(Duration::from_secs(2)).await;
    // After the cooldown they may meet again.
    let m = a.matched().await;
    assert_ne!(m.id, id);
    b.matched().await;
    server.stop().await;
}

#[tokio::test]
async fn block_is_permanent_and_ends_the_match_without_requeueing() {
    let server = TestServer::start(config()).await;
    let (mut a, mut b, id) = matched_pair(&server).await;
    a.send(&ClientMsg::Block { match_id: id }).await;
    assert_eq!(b.recv().await, ServerMsg::PeerLeft { match_id: id, reason: LeftReason::Skipped });
    a.expect_silence(Duration::from_millis(100)).await;
    assert_eq!(server.stats().await.waiting, 0, "block does not requeue");
    a.send(&ClientMsg::Next).await;
    assert_eq!(a.recv().await, ServerMsg::Queued { mode: Mode::Video });
    b.send(&ClientMsg::Next).await;
    assert_eq!(b.recv().await, ServerMsg::Queued { mode: Mode::Video });
    skip(Duration::from_secs(600)).await;
    a.expect_silence(Duration::from_millis(100)).await;
    let mut c = server.client().await;
    c.join(Mode::Video, &[]).await;
    let mc = c.matched().await;
    let ma = a.matched().await;
    assert_eq!(mc.id, ma.id, "the one who waited longest meets the newcomer");
    server.stop().await;
}

#[tokio::test]
async fn stop_leaves_the_match_and_the_peer_is_told() {
    let server = TestServer::start(config()).await;
    let (mut a, mut b, id) = matched_pair(&server).await;
    b.send(&ClientMsg::Stop).await;
    assert_eq!(a.recv().await, ServerMsg::PeerLeft { match_id: id, reason: LeftReason::Stopped });
    let stats = server.wait_stats(|s| s.in_match == 0).await;
    assert_eq!(stats.waiting, 0);
    // Stop while queued leaves the queue.
    a.send(&ClientMsg::Next).await;
    assert_eq!(a.recv().await, ServerMsg::Queued { mode: Mode::Video });
    a.send(&ClientMsg::Stop).await;
    server.wait_stats(|s| s.waiting == 0).await;
    server.stop().await;
}

#[tokio::test]
async fn out_of_state_messages_get_their_error_and_change_nothing() {
    let server = TestServer::start(config()).await;
    let mut fresh = server.client().await;
    fresh.send(&ClientMsg::Next).await;
    assert!(matches!(fresh.recv().await, ServerMsg::Error { code: ErrorCode::NotInMatch, .. }));
    let (mut a, _b, _id) = matched_pair(&server).await;
    a.send(&ClientMsg::Join(Preferences::new(Mode::Text))).await;
    assert!(matches!(a.recv().await, ServerMsg::Error { code: ErrorCode::NotAllowed, .. }));
    a.send_raw(r#"{"type":"join","mode":"video","interests":["a","b","c","d","e","f","g","h","i","j","k"]}"#).await;
    assert!(matches!(a.recv().await, ServerMsg::Error { code: ErrorCode::InvalidPreferences, .. }));
    assert_eq!(server.stats().await.in_match, 2);
    server.stop().await;
}

#[tokio::test]
async fn join_while_queued_replaces_the_preferences() {
    let server = TestServer::start(config()).await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.join(Mode::Video, &[]).await;
    a.join(Mode::Text, &["go"]).await;
    b.join(Mode::Text, &["go"]).await;
    assert_eq!(a.matched().await.common_interests, vec!["go"]);
    server.stop().await;
}

#[tokio::test]
async fn resume_within_the_grace_period_restores_the_match() {
    let server = TestServer::start(config()).await;
    let (a, mut b, id) = matched_pair(&server).await;
    let (token, session) = (a.token.clone(), a.session);
    a.drop_connection();
    assert_eq!(b.recv().await, ServerMsg::PeerReconnecting { match_id: id });
    skip(Duration::from_secs(10)).await;
    // Chat sent while the peer is away is delivered when it is back.
    b.send(&ClientMsg::Chat { match_id: id, text: "still there?".into() }).await;
    let mut a = server.resume(&token).await;
    assert!(a.resumed);
    assert_eq!(a.session, session);
    let m = a.matched().await;
    assert_eq!((m.id, m.role), (id, Role::Offerer));
    assert_eq!(a.recv().await, ServerMsg::Chat { match_id: id, text: "still there?".into() });
    assert_eq!(b.recv().await, ServerMsg::PeerResumed { match_id: id, generation: Some(1) });
    // The match works as before.
    a.send(&ClientMsg::Chat { match_id: id, text: "back".into() }).await;
    assert_eq!(b.recv().await, ServerMsg::Chat { match_id: id, text: "back".into() });
    server.stop().await;
}

#[tokio::test]
async fn after_the_grace_period_the_peer_is_told_and_the_token_is_dead() {
    let server = TestServer::start(config()).await;
    let (a, mut b, id) = matched_pair(&server).await;
    let token = a.token.clone();
    a.drop_connection();
    assert_eq!(b.recv().await, ServerMsg::PeerReconnecting { match_id: id });
    skip(Duration::from_millis(14_500)).await;
    b.expect_silence(Duration::from_millis(100)).await;
    skip(Duration::from_millis(500)).await;
    assert_eq!(b.recv().await, ServerMsg::PeerLeft { match_id: id, reason: LeftReason::Disconnected });
    let late = server.resume(&token).await;
    assert!(!late.resumed, "an expired token starts a new session");
    assert_ne!(late.token.0, token.0);
    server.stop().await;
}

#[tokio::test]
async fn a_queued_session_keeps_its_place_across_a_reconnect() {
    let server = TestServer::start(config()).await;
    let a = server.client().await;
    let mut a = a;
    a.join(Mode::Text, &[]).await;
    let token = a.token.clone();
    a.drop_connection();
    server.wait_stats(|s| s.waiting == 0 && s.grace_timers == 1).await;
    // While away nobody is paired with an empty chair.
    let mut b = server.client().await;
    b.join(Mode::Text, &[]).await;
    b.expect_silence(Duration::from_millis(300)).await;
    let mut a = server.resume(&token).await;
    assert!(a.resumed);
    assert_eq!(a.recv().await, ServerMsg::Queued { mode: Mode::Text });
    let m = a.matched().await;
    assert_eq!(m.role, Role::Offerer, "a kept its earlier place, so it waited longer");
    b.matched().await;
    server.stop().await;
}

#[tokio::test]
async fn a_second_socket_replaces_the_first_with_close_4001() {
    let server = TestServer::start(config()).await;
    let (mut a, mut b, id) = matched_pair(&server).await;
    let mut a2 = server.resume(&a.token).await;
    assert!(a2.resumed);
    assert_eq!(a.expect_close().await, close::REPLACED);
    assert_eq!(a2.matched().await.id, id);
    // The new tab builds a new peer connection: the peer is told to negotiate again.
    assert_eq!(b.recv().await, ServerMsg::PeerResumed { match_id: id, generation: Some(1) });
    b.expect_silence(Duration::from_millis(200)).await;
    // The replaced socket has closed by now; its close must not send the session away
    // (no grace timer, no place in its address's absent queue) while a2 is live.
    let stats = server.stats().await;
    assert_eq!(
        (stats.sessions, stats.live_sockets, stats.grace_timers, stats.away),
        (2, 2, 0, 0),
        "never two sockets for one session, and the old one's close changes nothing"
    );
    a2.send(&ClientMsg::Chat { match_id: id, text: "new tab".into() }).await;
    assert_eq!(b.recv().await, ServerMsg::Chat { match_id: id, text: "new tab".into() });
    server.stop().await;
}

#[tokio::test]
async fn a_stale_match_id_is_refused_and_reaches_nobody() {
    let server = TestServer::start(config()).await;
    let (mut a, mut b, old) = matched_pair(&server).await;
    let bogus = MatchId(uuid::Uuid::from_u128(7));
    a.send(&ClientMsg::Chat { match_id: bogus, text: "x".into() }).await;
    assert!(
        matches!(a.recv().await, ServerMsg::Error { code: ErrorCode::StaleMatch, match_id: Some(m), .. } if m == bogus)
    );
    // After a new match, the old id is stale for both sides.
    a.send(&ClientMsg::Next).await;
    assert_eq!(a.recv().await, ServerMsg::Queued { mode: Mode::Video });
    assert!(matches!(b.recv().await, ServerMsg::PeerLeft { .. }));
    let mut c = server.client().await;
    c.join(Mode::Video, &[]).await;
    let new = a.matched().await.id;
    c.matched().await;
    b.send(&ClientMsg::Chat { match_id: old, text: "come back".into() }).await;
    assert!(matches!(b.recv().await, ServerMsg::Error { code: ErrorCode::StaleMatch, .. }));
    b.send(&ClientMsg::Signal { match_id: old, payload: SignalPayload::EndOfCandidates, generation: None }).await;
    assert!(matches!(b.recv().await, ServerMsg::Error { code: ErrorCode::StaleMatch, .. }));
    a.send(&ClientMsg::Chat { match_id: old, text: "old".into() }).await;
    assert!(matches!(a.recv().await, ServerMsg::Error { code: ErrorCode::StaleMatch, .. }));
    c.send(&ClientMsg::Chat { match_id: new, text: "hi".into() }).await;
    assert_eq!(a.recv().await, ServerMsg::Chat { match_id: new, text: "hi".into() });
    c.expect_silence(Duration::from_millis(100)).await;
    server.stop().await;
}

fn offer(n: usize) -> SignalPayload {
    SignalPayload::Candidate {
        candidate: format!("candidate:{n}"),
        sdp_mid: Some("0".into()),
        sdp_m_line_index: Some(0),
    }
}

#[tokio::test]
async fn signals_are_buffered_until_ready_then_flushed_in_order() {
    let server = TestServer::start(config()).await;
    let (mut a, mut b, id) = matched_pair(&server).await;
    a.send(&ClientMsg::Ready { match_id: id }).await;
    a.send(&ClientMsg::Signal {
        match_id: id,
        payload: SignalPayload::Offer { sdp: "v=0 offer".into() },
        generation: None,
    })
    .await;
    for n in 0..5 {
        a.send(&ClientMsg::Signal { match_id: id, payload: offer(n), generation: None }).await;
    }
    b.expect_silence(Duration::from_millis(200)).await;
    b.send(&ClientMsg::Ready { match_id: id }).await;
    assert_eq!(
        b.recv().await,
        ServerMsg::Signal { match_id: id, payload: SignalPayload::Offer { sdp: "v=0 offer".into() }, generation: None }
    );
    for n in 0..5 {
        assert_eq!(b.recv().await, ServerMsg::Signal { match_id: id, payload: offer(n), generation: None });
    }
    // a is ready: b's answer goes straight through.
    b.send(&ClientMsg::Signal {
        match_id: id,
        payload: SignalPayload::Answer { sdp: "v=0 answer".into() },
        generation: None,
    })
    .await;
    assert_eq!(
        a.recv().await,
        ServerMsg::Signal {
            match_id: id,
            payload: SignalPayload::Answer { sdp: "v=0 answer".into() },
            generation: None
        }
    );
    // Ready twice is harmless; ready for another match is stale.
    b.send(&ClientMsg::Ready { match_id: id }).await;
    b.send(&ClientMsg::Ready { match_id: MatchId(uuid::Uuid::from_u128(1)) }).await;
    assert!(matches!(b.recv().await, ServerMsg::Error { code: ErrorCode::StaleMatch, .. }));
    server.stop().await;
}

#[tokio::test]
async fn the_signal_buffer_is_bounded_and_dropped_with_the_match() {
    let mut cfg = config();
    cfg.signal_buffer = 4;
    let server = TestServer::start(cfg).await;
    let (mut a, mut b, id) = matched_pair(&server).await;
    for n in 0..6 {
        a.send(&ClientMsg::Signal { match_id: id, payload: offer(n), generation: None }).await;
    }
    for _ in 0..2 {
        assert!(
            matches!(a.recv().await, ServerMsg::Error { code: ErrorCode::RateLimited, match_id: Some(m), .. } if m == id)
        );
    }
    assert_eq!(server.stats().await.buffered_signals, 4);
    b.send(&ClientMsg::Ready { match_id: id }).await;
    for n in 0..4 {
        assert_eq!(b.recv().await, ServerMsg::Signal { match_id: id, payload: offer(n), generation: None });
    }
    b.expect_silence(Duration::from_millis(100)).await;
    // A buffer is dropped when its match ends.
    b.send(&ClientMsg::Signal { match_id: id, payload: offer(9), generation: None }).await;
    server.wait_stats(|s| s.buffered_signals == 1).await;
    b.send(&ClientMsg::Stop).await;
    server.wait_stats(|s| s.buffered_signals == 0 && s.in_match == 0).await;
    server.stop().await;
}

#[tokio::test]
async fn chat_and_typing_reach_the_peer_only() {
    let server = TestServer::start(config()).await;
    let (mut a, mut b, id) = matched_pair(&server).await;
    let (mut c, mut d, _) = matched_pair(&server).await;
    a.send(&ClientMsg::Typing { match_id: id, typing: true }).await;
    a.send(&ClientMsg::Chat { match_id: id, text: "hello ✨".into() }).await;
    assert_eq!(b.recv().await, ServerMsg::Typing { match_id: id, typing: true });
    assert_eq!(b.recv().await, ServerMsg::Chat { match_id: id, text: "hello ✨".into() });
    a.send_raw(&format!(r#"{{"type":"chat","match_id":"{id}","text":"{}"}}"#, "x".repeat(2001))).await;
    assert!(matches!(a.recv().await, ServerMsg::Error { code: ErrorCode::TooLarge, .. }));
    c.expect_silence(Duration::from_millis(100)).await;
    d.expect_silence(Duration::from_millis(10)).await;
    a.expect_silence(Duration::from_millis(10)).await;
    server.stop().await;
}

#[tokio::test]
async fn reports_are_counted_for_the_current_or_last_match() {
    let server = TestServer::start(config()).await;
    let (mut a, mut b, id) = matched_pair(&server).await;
    a.send(&ClientMsg::Report { match_id: id, reason: ReportReason::Spam }).await;
    server.wait_stats(|s| s.reports == 1).await;
    b.send(&ClientMsg::Next).await;
    assert_eq!(b.recv().await, ServerMsg::Queued { mode: Mode::Video });
    assert!(matches!(a.recv().await, ServerMsg::PeerLeft { .. }));
    // The stranger skipped first: the other side's report still lands.
    b.send(&ClientMsg::Report { match_id: id, reason: ReportReason::Harassment }).await;
    server.wait_stats(|s| s.reports == 2).await;
    // One report per reporter and match, however often it is sent.
    for _ in 0..20 {
        a.send(&ClientMsg::Report { match_id: id, reason: ReportReason::Harassment }).await;
    }
    a.send(&ClientMsg::Report { match_id: MatchId(uuid::Uuid::from_u128(3)), reason: ReportReason::Other }).await;
    assert!(matches!(a.recv().await, ServerMsg::Error { code: ErrorCode::StaleMatch, .. }));
    assert_eq!(server.stats().await.reports, 2);
    server.stop().await;
}

#[tokio::test]
async fn blocking_an_earlier_match_holds_while_both_wait() {
    let server = TestServer::start(config()).await;
    let (mut a, mut b, id) = matched_pair(&server).await;
    b.send(&ClientMsg::Next).await;
    assert_eq!(b.recv().await, ServerMsg::Queued { mode: Mode::Video });
    assert!(matches!(a.recv().await, ServerMsg::PeerLeft { .. }));
    a.send(&ClientMsg::Next).await;
    assert_eq!(a.recv().await, ServerMsg::Queued { mode: Mode::Video });
    // Both wait out the cooldown; a blocks the match that just ended.
    a.send(&ClientMsg::Block { match_id: id }).await;
    a.expect_silence(Duration::from_millis(100)).await;
    skip(Duration::from_secs(600)).await;
    a.expect_silence(Duration::from_millis(200)).await;
    b.expect_silence(Duration::from_millis(50)).await;
    assert_eq!(server.stats().await.waiting, 2);
    let mut c = server.client().await;
    c.join(Mode::Video, &[]).await;
    let mc = c.matched().await;
    assert_eq!(mc.id, b.matched().await.id, "b waited longest");
    server.stop().await;
}

#[tokio::test]
async fn a_peer_left_while_away_is_told_on_resume() {
    let server = TestServer::start(config()).await;
    let (a, mut b, id) = matched_pair(&server).await;
    let token = a.token.clone();
    a.drop_connection();
    assert_eq!(b.recv().await, ServerMsg::PeerReconnecting { match_id: id });
    b.send(&ClientMsg::Next).await;
    assert_eq!(b.recv().await, ServerMsg::Queued { mode: Mode::Video });
    let mut a = server.resume(&token).await;
    assert!(a.resumed);
    assert_eq!(a.recv().await, ServerMsg::PeerLeft { match_id: id, reason: LeftReason::Skipped });
    a.expect_silence(Duration::from_millis(100)).await;
    server.stop().await;
}

#[tokio::test]
async fn stop_sets_no_cooldown() {
    let server = TestServer::start(config()).await;
    let (mut a, mut b, id) = matched_pair(&server).await;
    a.send(&ClientMsg::Stop).await;
    assert_eq!(b.recv().await, ServerMsg::PeerLeft { match_id: id, reason: LeftReason::Stopped });
    // Only `next` keeps two people apart (rule 5): after a stop they may meet again.
    a.join(Mode::Video, &[]).await;
    b.join(Mode::Video, &[]).await;
    let again = a.matched().await.id;
    assert_ne!(again, id);
    assert_eq!(b.matched().await.id, again);
    server.stop().await;
}

#[tokio::test]
async fn online_counts_are_pushed_when_they_change() {
    let server = TestServer::start(config()).await;
    let mut a = server.client().await;
    let first = loop {
        if let ServerMsg::Online(c) = a.recv_any().await {
            break c;
        }
    };
    assert_eq!(first, OnlineCounts { count: 1, chatting: 0 });
    let (_b, _c, _) = matched_pair(&server).await;
    let next = loop {
        if let ServerMsg::Online(c) = a.recv_any().await {
            break c;
        }
    };
    assert_eq!(next, OnlineCounts { count: 3, chatting: 2 });
    // Nothing changes: nothing is pushed.
    skip(Duration::from_secs(5)).await;
    let quiet = tokio::time::timeout(Duration::from_millis(1_200), a.recv_any()).await;
    assert!(quiet.is_err(), "no push without a change: {quiet:?}");
    server.stop().await;
}

#[tokio::test]
async fn every_table_empties_when_everyone_leaves() {
    let server = TestServer::start(config()).await;
    let (a, b, id) = matched_pair(&server).await;
    let (mut c, d, _) = matched_pair(&server).await;
    let mut e = server.client().await;
    e.join(Mode::Text, &["x"]).await;
    c.send(&ClientMsg::Signal { match_id: id, payload: SignalPayload::EndOfCandidates, generation: None }).await;
    a.close().await;
    b.drop_connection();
    c.close().await;
    d.drop_connection();
    e.close().await;
    server.wait_stats(|s| s.live_sockets == 0).await;
    skip(Duration::from_secs(16)).await;
    let stats = server.wait_stats(|s| s.is_empty()).await;
    assert_eq!(stats, server::hub::HubStats::default());
    server.stop().await;
}

#[tokio::test]
async fn shutdown_tells_clients_to_reconnect() {
    let server = TestServer::start(config()).await;
    let mut a = server.client().await;
    let stop = tokio::spawn(server.stop());
    assert_eq!(a.expect_close().await, close::SERVICE_RESTART);
    stop.await.unwrap();
}

#[tokio::test]
async fn a_failed_hub_asks_every_client_to_reconnect_and_the_server_exits_with_the_reason() {
    let server = TestServer::start(config()).await;
    let (mut a, mut b, _) = matched_pair(&server).await;
    let mut idle = server.client().await;
    server.hub.fail("the backend is gone");
    for c in [&mut a, &mut b, &mut idle] {
        assert_eq!(c.expect_close().await, close::SERVICE_RESTART);
    }
    let err = server.exit().await.expect_err("a failed hub fails the server");
    assert!(err.to_string().contains("the backend is gone"), "{err}");
}

#[tokio::test]
async fn metrics_are_exposed_in_prometheus_format() {
    let server = TestServer::start(config()).await;
    let (mut a, mut b, id) = matched_pair(&server).await;
    a.send(&ClientMsg::Chat { match_id: id, text: "x".into() }).await;
    b.recv().await;
    // Not on the public port: on its own (loopback) listener.
    let public = http_get(server.addr, "/metrics").await;
    assert!(public.starts_with("HTTP/1.1 404"), "{public}");
    let body = http_get(server.metrics_addr.expect("metrics are on"), "/metrics").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    for needle in [
        "letsmeet_matches_started_total{mode=\"video\"}",
        "letsmeet_messages_relayed_total{kind=\"chat\",delivery=\"direct\"}",
        "letsmeet_relay_latency_seconds_bucket",
        "letsmeet_queue_wait_seconds_count",
        "letsmeet_sessions_in_match",
        "letsmeet_connections",
    ] {
        assert!(body.contains(needle), "missing {needle} in\n{body}");
    }
    server.stop().await;
}
