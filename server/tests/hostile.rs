//! Limits and hostile clients: rate limits, oversized frames, foreign origins,
//! connection caps, clients that do not read, and garbage of every kind.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use protocol::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn over_the_rate_messages_are_refused_and_the_connection_stays() {
    let server = TestServer::start(config()).await;
    let mut a = server.client().await;
    // Burst 100: the first 100 pass (each `stop` is a harmless no-op), the rest are limited.
    for _ in 0..130 {
        a.send(&ClientMsg::Stop).await;
    }
    let mut limited = 0;
    while let Ok(msg) = tokio::time::timeout(Duration::from_millis(300), a.recv()).await {
        assert!(matches!(msg, ServerMsg::Error { code: ErrorCode::RateLimited, .. }), "{msg:?}");
        limited += 1;
    }
    assert!((25..=30).contains(&limited), "{limited} of 130 were limited");
    // The sustained rate refills: after a pause the socket works normally.
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.join(Mode::Text, &[]).await;
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_keeps_flooding_is_closed_with_1008() {
    let mut cfg = config();
    cfg.rate_burst = 10;
    cfg.flood_strikes = 20;
    let server = TestServer::start(cfg).await;
    let mut a = server.client().await;
    for _ in 0..40 {
        if a.ws.send(Message::text(r#"{"type":"stop"}"#)).await.is_err() {
            break;
        }
    }
    assert_eq!(a.expect_close().await, close::POLICY);
    let mut b = server.client().await;
    b.join(Mode::Video, &[]).await;
    server.stop().await;
}

#[tokio::test]
async fn a_frame_over_the_limit_closes_with_1009() {
    let server = TestServer::start(config()).await;
    let (mut a, mut b, id) = matched_pair(&server).await;
    let huge = format!(r#"{{"type":"chat","match_id":"{id}","text":"{}"}}"#, "x".repeat(70 * 1024));
    a.send_raw(&huge).await;
    assert_eq!(a.expect_close().await, close::TOO_LARGE);
    // The peer never sees it; it sees a normal reconnecting notice.
    assert_eq!(b.recv().await, ServerMsg::PeerReconnecting { match_id: id });
    server.stop().await;
}

#[tokio::test]
async fn a_frame_just_under_the_limit_is_fine() {
    let server = TestServer::start(config()).await;
    let (mut a, mut b, id) = matched_pair(&server).await;
    let sdp = "a".repeat(60 * 1024);
    a.send(&ClientMsg::Ready { match_id: id }).await;
    b.send(&ClientMsg::Ready { match_id: id }).await;
    a.send(&ClientMsg::Signal { match_id: id, payload: SignalPayload::Offer { sdp: sdp.clone() }, generation: None })
        .await;
    assert_eq!(
        b.recv().await,
        ServerMsg::Signal { match_id: id, payload: SignalPayload::Offer { sdp }, generation: None }
    );
    server.stop().await;
}

#[tokio::test]
async fn foreign_origins_are_refused_before_the_upgrade() {
    let server = TestServer::start(config()).await;
    let url = server.url();
    let err = tokio_tungstenite::connect_async(request_with_origin(&url, "https://evil.example")).await.unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 403),
        other => panic!("expected HTTP 403, got {other:?}"),
    }
    // Same origin (Origin host equals Host) is allowed.
    let same = format!("http://{}", server.addr);
    let (ws, _) = tokio_tungstenite::connect_async(request_with_origin(&url, &same)).await.unwrap();
    Client::after_upgrade(ws).await;
    server.stop().await;

    let mut cfg = config();
    cfg.allowed_origins = vec!["https://letsmeet.example".into()];
    let server = TestServer::start(cfg).await;
    let url = server.url();
    let (ws, _) =
        tokio_tungstenite::connect_async(request_with_origin(&url, "https://letsmeet.example")).await.unwrap();
    Client::after_upgrade(ws).await;
    let same = format!("http://{}", server.addr);
    match tokio_tungstenite::connect_async(request_with_origin(&url, &same)).await.unwrap_err() {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            assert_eq!(resp.status(), 403, "only the configured origins may connect")
        }
        other => panic!("expected HTTP 403, got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn connections_per_address_are_capped() {
    let mut cfg = config();
    cfg.max_conn_per_ip = 3;
    let server = TestServer::start(cfg).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(server.client().await);
    }
    match tokio_tungstenite::connect_async(server.url()).await.unwrap_err() {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 429),
        other => panic!("expected HTTP 429, got {other:?}"),
    }
    clients.pop().unwrap().close().await;
    server.wait_stats(|s| s.live_sockets == 2).await;
    // The slot is free again once the socket task has finished.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio_tungstenite::connect_async(server.url()).await {
            Ok((ws, _)) => {
                Client::after_upgrade(ws).await;
                break;
            }
            Err(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => panic!("the freed slot was not reusable: {e}"),
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_does_not_read_is_disconnected_not_buffered() {
    let mut cfg = config();
    cfg.outbox = 16;
    a_sleeper_is_dropped(cfg).await;
}

#[tokio::test]
async fn the_outbox_is_bounded_in_bytes_too() {
    let mut cfg = config();
    cfg.outbox = 1_000_000;
    cfg.outbox_bytes = 70_000;
    let sent = a_sleeper_is_dropped(cfg).await;
    // About 4 MB sit in loopback socket buffers before the outbox fills at all; by
    // frame count alone the outbox would have taken every line (40 MB).
    assert!(sent < 5_000, "the sleeper was dropped only after {sent} lines of 2 KB");
}

/// A matched client that never reads, fed chat lines by its peer, is disconnected.
/// Returns how many lines its peer had sent when it learnt of the drop.
async fn a_sleeper_is_dropped(mut cfg: server::Config) -> usize {
    cfg.rate_per_sec = 100_000;
    cfg.rate_burst = 100_000;
    let server = TestServer::start(cfg).await;
    let (mut talker, sleeper, id) = matched_pair(&server).await;
    // The sleeper never reads. Send far more than socket buffers hold.
    let line = "z".repeat(2_000);
    let talker_task = tokio::spawn(async move {
        for sent in 1..=20_000 {
            if talker
                .ws
                .send(Message::text(ClientMsg::Chat { match_id: id, text: line.clone() }.to_json()))
                .await
                .is_err()
            {
                break;
            }
            if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(Duration::ZERO, talker.ws.next()).await
                && matches!(ServerMsg::from_json(t.as_str()), Ok(ServerMsg::PeerReconnecting { .. }))
            {
                return Some(sent);
            }
        }
        None
    });
    let sent = talker_task.await.unwrap().expect("the talker learns its peer's socket was dropped");
    let stats = server.wait_stats(|s| s.live_sockets == 1).await;
    assert_eq!(stats.sessions, 2, "the sleeper's session is kept for its grace period");
    drop(sleeper);
    server.stop().await;
    sent
}

#[tokio::test]
async fn connecting_and_dropping_in_a_loop_cannot_pile_up_sessions() {
    let mut cfg = config();
    cfg.max_conn_per_ip = 3;
    let server = TestServer::start(cfg).await;
    let mut tokens = Vec::new();
    for _ in 0..20 {
        let c = server.client().await;
        tokens.push(c.token.clone());
        c.drop_connection();
        server.wait_stats(|s| s.live_sockets == 0).await;
    }
    // Twice the connection cap, live or away: the longest-absent sessions ended early.
    let stats = server.stats().await;
    assert_eq!((stats.sessions, stats.grace_timers, stats.addresses, stats.away), (6, 6, 1, 6));
    assert!(!server.resume(&tokens[0]).await.resumed, "the oldest was ended");
    let last = server.resume(&tokens[19]).await;
    assert!(last.resumed, "the newest is still there");
    // Coming back and leaving again, over and over, keeps one entry per absent session.
    last.drop_connection();
    for _ in 0..30 {
        server.wait_stats(|s| s.live_sockets == 0).await;
        server.resume(&tokens[19]).await.drop_connection();
    }
    let stats = server.wait_stats(|s| s.live_sockets == 0).await;
    assert_eq!((stats.sessions, stats.away), (6, 6));
    server.stop().await;
}

#[tokio::test]
async fn a_thousand_malformed_messages_change_nothing_for_anyone_else() {
    let mut cfg = config();
    cfg.rate_per_sec = 100_000;
    cfg.rate_burst = 100_000;
    let server = TestServer::start(cfg).await;
    let (mut a, mut b, id) = matched_pair(&server).await;
    let mut attacker = server.client().await;
    let mut rng = Lcg(0x5eed);
    let templates = [
        String::new(),
        "{".into(),
        "null".into(),
        r#"{"type":"signal"}"#.into(),
        format!(r#"{{"type":"signal","match_id":"{id}","payload":{{"kind":"offer","sdp":5}}}}"#),
        format!(r#"{{"type":"chat","match_id":"{id}","text":"I am not in this match"}}"#),
        format!(r#"{{"type":"ready","match_id":"{id}"}}"#),
        format!(r#"{{"type":"block","match_id":"{id}"}}"#),
        format!(r#"{{"type":"report","match_id":"{id}","reason":"spam"}}"#),
        r#"{"type":"join","mode":"video","interests":[""]}"#.into(),
        r#"{"type":"join","mode":"audio"}"#.into(),
        r#"{"type":"join","mode":"video","country":"ZZ"}"#.into(),
        r#"{"type":"typing","match_id":"00000000-0000-0000-0000-000000000000","typing":1}"#.into(),
        r#"[{"type":"next"}]"#.into(),
        "\u{0}\u{1}\u{2}".into(),
    ];
    let mut sent = 0;
    for i in 0..1_000 {
        let text = if i % 3 == 0 {
            // Random bytes, made valid UTF-8 (text frames must be).
            let bytes: Vec<u8> = (0..rng.next() % 64).map(|_| rng.next() as u8).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            templates[rng.next() as usize % templates.len()].clone()
        };
        attacker.send_raw(&text).await;
        sent += 1;
    }
    let mut errors = 0;
    while errors < sent {
        match attacker.recv().await {
            ServerMsg::Error { code, .. } => {
                assert_ne!(code, ErrorCode::RateLimited);
                errors += 1;
            }
            other => panic!("the attacker got {other:?}"),
        }
    }
    // The real pair noticed nothing and still works.
    a.send(&ClientMsg::Chat { match_id: id, text: "still fine".into() }).await;
    assert_eq!(b.recv().await, ServerMsg::Chat { match_id: id, text: "still fine".into() });
    a.expect_silence(Duration::from_millis(100)).await;
    let stats = server.stats().await;
    assert_eq!((stats.sessions, stats.in_match, stats.waiting), (3, 2, 0));
    server.stop().await;
}

#[tokio::test]
async fn binary_frames_and_unknown_types_get_bad_message() {
    let server = TestServer::start(config()).await;
    let mut a = server.client().await;
    a.ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert!(matches!(a.recv().await, ServerMsg::Error { code: ErrorCode::BadMessage, .. }));
    a.send_raw(r#"{"type":"dance"}"#).await;
    assert!(matches!(a.recv().await, ServerMsg::Error { code: ErrorCode::BadMessage, .. }));
    a.join(Mode::Text, &[]).await;
    server.stop().await;
}

#[tokio::test]
async fn an_unparsable_resume_token_just_starts_a_new_session() {
    let server = TestServer::start(config()).await;
    let a = Client::connect(&format!("{}?resume=not-a-token", server.url())).await;
    assert!(!a.resumed);
    let b = Client::connect(&format!("{}?resume={}", server.url(), uuid::Uuid::nil())).await;
    assert!(!b.resumed);
    server.stop().await;
}

/// A tiny deterministic generator, so a failure can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[tokio::test]
async fn a_silent_client_is_pinged_then_dropped_after_the_idle_timeout() {
    let mut cfg = config();
    cfg.idle_timeout_secs = 0.6;
    let server = TestServer::start(cfg).await;
    let mut a = server.client().await;
    // A client that reads answers pings (tungstenite replies on read) and stays.
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = a.ws.next().await {
            assert!(!matches!(msg, Message::Close(_)), "a reading client was closed");
        }
    });
    // A client that never writes after its handshake never pongs: it is dropped once
    // the timeout passes, with a close frame saying why. It reads raw bytes, so nothing
    // of its own (a pong reply to a closed socket) can cut off what the server sent.
    let mut b = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    b.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(WAIT, b.read_to_end(&mut bytes)).await.expect("the server ends b's connection").unwrap();
    assert_eq!(server_close_code(&bytes), Some(close::POLICY), "b is closed with 1008");
    server.wait_stats(|s| s.live_sockets == 1).await;
    assert!(!reader.is_finished(), "the reading client is still connected");
    reader.abort();
    server.stop().await;
}

/// The code of the close frame in a raw server-to-client byte stream (HTTP upgrade
/// response, then unmasked frames), if there is one.
fn server_close_code(bytes: &[u8]) -> Option<u16> {
    let mut i = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    while i + 2 <= bytes.len() {
        let opcode = bytes[i] & 0x0f;
        let mut len = usize::from(bytes[i + 1] & 0x7f);
        i += 2;
        if len == 126 {
            len = usize::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
            i += 2;
        } else if len == 127 {
            len = u64::from_be_bytes(bytes[i..i + 8].try_into().ok()?) as usize;
            i += 8;
        }
        let payload = bytes.get(i..i + len)?;
        if opcode == 0x8 {
            return Some(u16::from_be_bytes([*payload.first()?, *payload.get(1)?]));
        }
        i += len;
    }
    None
}
