//! The fallback transport (server-sent events down, POSTs up) against a real server:
//! a fallback session with a WebSocket one, resume after the stream drops, replay by
//! `Last-Event-ID`, and hostile input refused as on `/ws`.

mod common;

use common::sse::{SseClient, get, post_raw};
use common::*;
use protocol::sse::{BATCH_HEADER, KEY_HEADER};
use protocol::{ClientMsg, ErrorCode, Mode, ServerMsg, SignalPayload, close};
use std::time::Duration;

/// A fallback client and a WebSocket client in one video match: (fallback, ws, match).
async fn mixed_pair(server: &TestServer) -> (SseClient, Client, protocol::MatchId) {
    let mut f = SseClient::connect(server.addr, None).await;
    let mut w = server.client().await;
    assert_eq!(f.post(&[ClientMsg::Join(protocol::Preferences::new(Mode::Video))]).await, 204);
    assert_eq!(f.recv().await, ServerMsg::Queued { mode: Mode::Video });
    w.join(Mode::Video, &[]).await;
    let ServerMsg::Matched { match_id, .. } = f.recv().await else { panic!() };
    assert_eq!(w.matched().await.id, match_id);
    (f, w, match_id)
}

fn chat(match_id: protocol::MatchId, text: &str) -> ClientMsg {
    ClientMsg::Chat { match_id, text: text.into() }
}

#[tokio::test]
async fn a_fallback_session_meets_a_websocket_one_and_everything_flows_both_ways() {
    let server = TestServer::start(config()).await;
    let (mut f, mut w, id) = mixed_pair(&server).await;
    assert_eq!(f.post(&[ClientMsg::Ready { match_id: id }]).await, 204);
    w.send(&ClientMsg::Ready { match_id: id }).await;
    // Signals, typing and chat, each way; a batch of several in one POST.
    let offer = SignalPayload::Offer { sdp: "v=0 fallback".into() };
    let signal = ClientMsg::Signal { match_id: id, payload: offer.clone(), generation: Some(0) };
    assert_eq!(
        f.post(&[signal, ClientMsg::Typing { match_id: id, typing: true }, chat(id, "hi from http")]).await,
        204
    );
    assert!(matches!(w.recv().await, ServerMsg::Signal { payload, .. } if payload == offer));
    assert!(matches!(w.recv().await, ServerMsg::Typing { typing: true, .. }));
    assert!(matches!(w.recv().await, ServerMsg::Chat { text, .. } if text == "hi from http"));
    let answer = SignalPayload::Answer { sdp: "v=0 ws".into() };
    w.send(&ClientMsg::Signal { match_id: id, payload: answer.clone(), generation: Some(0) }).await;
    w.send(&ClientMsg::Typing { match_id: id, typing: true }).await;
    w.send(&chat(id, "hi from ws")).await;
    assert!(matches!(f.recv().await, ServerMsg::Signal { payload, .. } if payload == answer));
    assert!(matches!(f.recv().await, ServerMsg::Typing { typing: true, .. }));
    assert!(matches!(f.recv().await, ServerMsg::Chat { text, .. } if text == "hi from ws"));
    // Next from the fallback side ends it for both, as on /ws.
    assert_eq!(f.post(&[ClientMsg::Next]).await, 204);
    assert_eq!(f.recv().await, ServerMsg::Queued { mode: Mode::Video });
    assert!(matches!(w.recv().await, ServerMsg::PeerLeft { .. }));
    server.stop().await;
}

#[tokio::test]
async fn a_retried_batch_is_applied_once() {
    let server = TestServer::start(config()).await;
    let (mut f, mut w, id) = mixed_pair(&server).await;
    assert_eq!(f.post_batch(7, &[chat(id, "once")]).await, 204);
    assert_eq!(f.post_batch(7, &[chat(id, "once")]).await, 204, "a retry is acknowledged");
    assert_eq!(f.post_batch(8, &[chat(id, "twice")]).await, 204);
    assert!(matches!(w.recv().await, ServerMsg::Chat { text, .. } if text == "once"));
    assert!(matches!(w.recv().await, ServerMsg::Chat { text, .. } if text == "twice"));
    w.expect_silence(Duration::from_millis(200)).await;
    server.stop().await;
}

#[tokio::test]
async fn a_stream_that_comes_back_with_last_event_id_gets_exactly_what_it_missed() {
    let server = TestServer::start(config()).await;
    let (mut f, mut w, id) = mixed_pair(&server).await;
    w.send(&chat(id, "seen")).await;
    assert!(matches!(f.recv().await, ServerMsg::Chat { text, .. } if text == "seen"));
    let seen = f.last_id.clone();
    // The stream drops (a proxy cut it); the peer keeps talking meanwhile.
    drop(std::mem::replace(&mut f.events, get(server.addr, &[("Last-Event-ID", "nobody.0")]).await.1.unwrap()));
    for i in 0..5 {
        w.send(&chat(id, &format!("missed {i}"))).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(f.reattach(&seen).await.status, 200);
    for i in 0..5 {
        let msg = f.recv().await;
        assert!(matches!(&msg, ServerMsg::Chat { text, .. } if *text == format!("missed {i}")), "{msg:?}");
    }
    // Nothing twice, and the connection carries on both ways.
    w.send(&chat(id, "after")).await;
    assert!(matches!(f.recv().await, ServerMsg::Chat { text, .. } if text == "after"));
    assert_eq!(f.post(&[chat(id, "still here")]).await, 204);
    assert!(matches!(w.recv().await, ServerMsg::Chat { text, .. } if text == "still here"));
    w.expect_silence(Duration::from_millis(100)).await;
    assert!(matches!(w.welcome, ServerMsg::Welcome { .. }));
    server.stop().await;
}

#[tokio::test]
async fn a_last_event_id_that_cannot_be_served_says_reconnect() {
    let server = TestServer::start(config()).await;
    let mut f = SseClient::connect(server.addr, None).await;
    for id in ["nobody.3".to_string(), format!("{}.999", f.key)] {
        let (head, events) = get(server.addr, &[("Last-Event-ID", &id)]).await;
        assert_eq!(head.status, 200);
        let close = events.unwrap().next().await.unwrap();
        assert_eq!(close.kind, "close");
        assert!(close.data.contains(&close::SERVICE_RESTART.to_string()), "{close:?}");
    }
    // The connection itself is not harmed by a bad guess.
    assert_eq!(f.post(&[ClientMsg::Join(protocol::Preferences::new(Mode::Text))]).await, 204);
    assert_eq!(f.recv().await, ServerMsg::Queued { mode: Mode::Text });
    server.stop().await;
}

#[tokio::test]
async fn a_session_resumes_after_its_stream_is_gone_for_good() {
    let server = TestServer::start(config()).await;
    let (mut f, mut w, id) = mixed_pair(&server).await;
    assert_eq!(f.post(&[ClientMsg::Ready { match_id: id }]).await, 204);
    w.send(&ClientMsg::Ready { match_id: id }).await;
    let token = f.token();
    let session = f.session();
    drop(f);
    // The server sees the stream's connection close; past the window for the stream to
    // come back, the connection ends like a dropped socket, and the session waits out
    // its grace period.
    tokio::time::sleep(Duration::from_millis(200)).await;
    skip(server::sse::REATTACH_WINDOW + Duration::from_millis(100)).await;
    assert_eq!(w.recv().await, ServerMsg::PeerReconnecting { match_id: id });
    let mut back = SseClient::connect(server.addr, Some(&token)).await;
    assert!(matches!(back.welcome, ServerMsg::Welcome { resumed: true, .. }), "{:?}", back.welcome);
    assert_eq!(back.session(), session);
    assert!(matches!(w.recv().await, ServerMsg::PeerResumed { match_id, .. } if match_id == id));
    let ServerMsg::Matched { match_id, .. } = back.recv().await else { panic!() };
    assert_eq!(match_id, id);
    server.wait_stats(|s| s.sessions == 2).await;
    assert_eq!(server.sse_connections(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_websocket_resume_replaces_a_fallback_connection() {
    let server = TestServer::start(config()).await;
    let mut f = SseClient::connect(server.addr, None).await;
    let resumed = server.resume(&f.token()).await;
    assert!(resumed.resumed);
    assert_eq!(f.expect_close().await, close::REPLACED);
    server.stop().await;
}

#[tokio::test]
async fn hostile_input_is_refused_as_on_the_websocket() {
    let mut cfg = config();
    cfg.rate_per_sec = 5;
    cfg.rate_burst = 5;
    cfg.flood_strikes = 10;
    let server = TestServer::start(cfg).await;
    // No key, a wrong key, a bad batch number.
    let join = ClientMsg::Join(protocol::Preferences::new(Mode::Text)).to_json();
    assert_eq!(post_raw(server.addr, &[], join.as_bytes()).await.0, 404);
    assert_eq!(post_raw(server.addr, &[(KEY_HEADER, "0123456789abcdef")], join.as_bytes()).await.0, 404);
    let mut f = SseClient::connect(server.addr, None).await;
    let key = f.key.clone();
    assert_eq!(post_raw(server.addr, &[(KEY_HEADER, &key), (BATCH_HEADER, "x")], join.as_bytes()).await.0, 400);
    // A foreign origin, either way.
    let evil = [("Origin", "https://evil.example")];
    assert_eq!(get(server.addr, &evil).await.0.status, 403);
    assert_eq!(post_raw(server.addr, &[evil[0], (KEY_HEADER, &key)], join.as_bytes()).await.0, 403);
    // Garbage in a batch: the same answers as on /ws.
    assert_eq!(post_raw(server.addr, &[(KEY_HEADER, &key)], b"[{\"type\":\"nope\"}]").await.0, 204);
    assert!(matches!(f.recv().await, ServerMsg::Error { code: ErrorCode::BadMessage, .. }));
    assert_eq!(post_raw(server.addr, &[(KEY_HEADER, &key)], b"[1,").await.0, 400);
    // A body over the limit is refused before it is read.
    let huge = vec![b' '; 3 * protocol::limits::MAX_FRAME_BYTES];
    assert_eq!(post_raw(server.addr, &[(KEY_HEADER, &key)], &huge).await.0, 413);
    // A flood: rate-limited answers, then the connection is closed (1008).
    let burst: Vec<ClientMsg> = (0..40).map(|_| ClientMsg::Stop).collect();
    assert_eq!(f.post(&burst).await, 204);
    assert_eq!(f.expect_close().await, close::POLICY);
    assert_eq!(f.post(&[ClientMsg::Stop]).await, 404, "a closed connection takes nothing more");
    // One message over the frame limit closes the connection with 1009, as on /ws.
    let mut g = SseClient::connect(server.addr, None).await;
    let long = format!("[{{\"type\":\"stop\",\"x\":\"{}\"}}]", "y".repeat(protocol::limits::MAX_FRAME_BYTES));
    assert_eq!(post_raw(server.addr, &[(KEY_HEADER, &g.key.clone())], long.as_bytes()).await.0, 413);
    assert_eq!(g.expect_close().await, close::TOO_LARGE);
    server.stop().await;
}

#[tokio::test]
async fn the_first_message_must_be_hello_and_caps_count_fallback_connections() {
    let mut cfg = config();
    cfg.max_conn_per_ip = 2;
    let server = TestServer::start(cfg).await;
    let mut f = SseClient::open(server.addr).await;
    assert_eq!(f.post(&[ClientMsg::Stop]).await, 204);
    assert_eq!(f.expect_close().await, close::POLICY);
    let _a = SseClient::connect(server.addr, None).await;
    let _b = server.client().await;
    let (head, _) = get(server.addr, &[]).await;
    assert_eq!(head.status, 429, "the per-address cap counts both transports");
    server.stop().await;
}

#[tokio::test]
async fn posts_are_the_sign_of_life_and_a_silent_connection_times_out() {
    let mut cfg = config();
    cfg.idle_timeout_secs = 30.0;
    let server = TestServer::start(cfg).await;
    let mut f = SseClient::connect(server.addr, None).await;
    skip(Duration::from_secs(20)).await;
    assert_eq!(f.post(&[]).await, 204, "an empty batch: a heartbeat");
    skip(Duration::from_secs(20)).await;
    assert_eq!(server.sse_connections(), 1, "alive: it posted 20 s ago");
    skip(Duration::from_secs(11)).await;
    assert_eq!(f.expect_close().await, close::POLICY, "silent for the idle timeout");
    server.stop().await;
}
