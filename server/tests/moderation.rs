//! Moderation end to end on a real server, with the test classifier (`--moderation
//! test`: a mostly bright red frame is flagged): sampled frames, the video gate,
//! bans for a flagged camera and for reports, enforcement at TCP accept, expiry, and
//! the admin API.

mod common;

use common::{Client, TestServer, WAIT, try_tcp_from};
use protocol::{ClientMsg, FrameOf, LeftReason, MatchId, Mode, ReportReason, ServerMsg, close};
use server::config::ModerationMode;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn jpeg(rgb: [u8; 3]) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(224, 224, image::Rgb(rgb));
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85).encode_image(&img).unwrap();
    out
}

fn red() -> Vec<u8> {
    jpeg([230, 20, 20])
}

fn clean() -> Vec<u8> {
    jpeg([90, 140, 200])
}

fn moderated(gate: bool) -> server::Config {
    let mut c = common::config();
    c.moderation = ModerationMode::Test;
    c.moderation_gate = gate;
    c.admin_token = Some("secret".into());
    c
}

/// A raw HTTP request from the loopback address `from`: (status, body). Status 0 when
/// the connection closed before any byte of a response.
async fn request(from: [u8; 4], to: SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
    let Ok(mut tcp) = try_tcp_from(from, to).await else { return (0, String::new()) };
    let sent = async {
        tcp.write_all(head.as_bytes()).await?;
        tcp.write_all(body).await
    };
    let _ = sent.await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

/// POSTs a frame as `client` (from `from`): (status, body).
async fn frame(
    server: &TestServer,
    from: [u8; 4],
    client: &Client,
    of: FrameOf,
    m: Option<MatchId>,
    jpeg: &[u8],
) -> (u16, String) {
    let query = match (of, m) {
        (FrameOf::Own, _) => "of=self".to_string(),
        (FrameOf::Peer, Some(m)) => format!("of=peer&match_id={m}"),
        (FrameOf::Peer, None) => "of=peer".to_string(),
    };
    let head = format!(
        "POST /moderation/frame?{query} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {}\r\n\
         Content-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
        client.token,
        jpeg.len()
    );
    request(from, server.addr, &head, jpeg).await
}

/// Whether a connection from `from` gets any HTTP answer (a banned one is closed at
/// accept, before a byte of the response).
async fn answered(from: [u8; 4], to: SocketAddr) -> bool {
    request(from, to, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"").await.0 != 0
}

async fn admin(server: &TestServer, method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    request([127, 0, 0, 1], server.metrics_addr.unwrap(), &head, body.as_bytes()).await
}

/// Two video users from `a` and `b`, matched (with the gate on, each sends a clean
/// frame first).
async fn video_pair(server: &TestServer, a: [u8; 4], b: [u8; 4], gate: bool) -> (Client, Client, MatchId) {
    let mut ca = Client::connect_from(a, server.addr).await;
    let mut cb = Client::connect_from(b, server.addr).await;
    ca.join(Mode::Video, &[]).await;
    cb.join(Mode::Video, &[]).await;
    if gate {
        assert_eq!(frame(server, a, &ca, FrameOf::Own, None, &clean()).await.0, 200);
        assert_eq!(frame(server, b, &cb, FrameOf::Own, None, &clean()).await.0, 200);
    }
    let m = ca.matched().await;
    assert_eq!(cb.matched().await.id, m.id);
    (ca, cb, m.id)
}

#[tokio::test]
async fn welcome_announces_sampling_and_video_users_wait_for_a_clean_camera() {
    let server = TestServer::start(moderated(true)).await;
    let mut a = Client::connect_from([127, 0, 1, 1], server.addr).await;
    let ServerMsg::Welcome { moderation: Some(m), .. } = &a.welcome else { panic!("{:?}", a.welcome) };
    assert_eq!((m.path.as_str(), m.size, m.gate), ("/moderation/frame", 224, true));
    let mut b = Client::connect_from([127, 0, 1, 2], server.addr).await;
    a.join(Mode::Video, &[]).await;
    b.join(Mode::Video, &[]).await;
    a.expect_silence(Duration::from_millis(400)).await;
    assert_eq!(server.stats().await.waiting_video, 0, "no ticket before a clean frame");
    assert_eq!(
        frame(&server, [127, 0, 1, 1], &a, FrameOf::Own, None, &clean()).await,
        (200, r#"{"flagged":false}"#.into())
    );
    a.expect_silence(Duration::from_millis(300)).await;
    assert_eq!(frame(&server, [127, 0, 1, 2], &b, FrameOf::Own, None, &clean()).await.0, 200);
    let m = a.matched().await;
    assert_eq!(b.matched().await.id, m.id);
    // Text users are never held.
    let mut c = Client::connect_from([127, 0, 1, 3], server.addr).await;
    let mut d = Client::connect_from([127, 0, 1, 4], server.addr).await;
    c.join(Mode::Text, &[]).await;
    d.join(Mode::Text, &[]).await;
    c.matched().await;
}

#[tokio::test]
async fn bad_frames_get_clear_answers_and_change_nothing() {
    let server = TestServer::start(moderated(false)).await;
    let from = [127, 0, 2, 1];
    let a = Client::connect_from(from, server.addr).await;
    let mut stranger = a.token.clone();
    stranger.0 = uuid::Uuid::new_v4();
    let nobody = Client { token: stranger, ..Client::raw(a.ws) };
    assert_eq!(frame(&server, from, &nobody, FrameOf::Own, None, &red()).await.0, 401, "unknown token");
    let a = Client::connect_from(from, server.addr).await;
    assert_eq!(frame(&server, from, &a, FrameOf::Peer, None, &red()).await.0, 400, "no match id");
    let m = MatchId(uuid::Uuid::new_v4());
    assert_eq!(frame(&server, from, &a, FrameOf::Peer, Some(m), &red()).await.0, 409, "not its match");
    assert_eq!(frame(&server, from, &a, FrameOf::Own, None, b"not a jpeg").await.0, 422);
    let head = format!(
        "POST /moderation/frame?of=self HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {}\r\n\
         Content-Type: image/png\r\nContent-Length: 3\r\n\r\n",
        a.token
    );
    assert_eq!(request(from, server.addr, &head, b"png").await.0, 415);
    assert!(answered(from, server.addr).await, "nothing was banned");
    // Off: 404.
    let plain = TestServer::start(common::config()).await;
    let b = Client::connect_from(from, plain.addr).await;
    assert!(matches!(b.welcome, ServerMsg::Welcome { moderation: None, .. }));
    assert_eq!(frame(&plain, from, &b, FrameOf::Own, None, &clean()).await.0, 404);
}

#[tokio::test]
async fn a_flagged_camera_bans_its_address_at_accept_until_the_ban_runs_out() {
    let mut config = moderated(false);
    config.ban_hours = 3.0 / 3600.0;
    let server = TestServer::start(config).await;
    let (bad, good) = ([127, 0, 3, 1], [127, 0, 3, 2]);
    let (mut a, mut b, m) = video_pair(&server, bad, good, false).await;
    let (status, body) = frame(&server, bad, &a, FrameOf::Own, None, &red()).await;
    assert_eq!((status, body.as_str()), (200, r#"{"flagged":true}"#));
    let ServerMsg::Banned { reason, until } = a.recv().await else { panic!("banned first") };
    assert_eq!(reason, "nudity on camera");
    assert!(until.ends_with('Z') && until.len() == 20, "{until}");
    assert_eq!(a.expect_close().await, close::BANNED);
    assert_eq!(b.recv().await, ServerMsg::PeerLeft { match_id: m, reason: LeftReason::Banned });
    // Refused before any byte of HTTP, for a page as for a socket; others are not.
    assert!(!answered(bad, server.addr).await, "the banned address got an answer");
    assert!(answered(good, server.addr).await);
    let (status, list) = admin(&server, "GET", "/admin/bans", "secret", "").await;
    assert_eq!(status, 200);
    assert!(list.contains(r#""address":"127.0.3.1""#) && list.contains(r#""kind":"model""#), "{list}");
    // It runs out.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    while !answered(bad, server.addr).await {
        assert!(tokio::time::Instant::now() < deadline, "the ban never ran out");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Client::connect_from(bad, server.addr).await;
}

#[tokio::test]
async fn a_strangers_flag_blurs_but_bans_only_when_a_second_viewer_agrees() {
    let mut config = moderated(false);
    config.rematch_cooldown_secs = 0.0;
    let server = TestServer::start(config).await;
    let (suspect, v1, v2) = ([127, 0, 4, 1], [127, 0, 4, 2], [127, 0, 4, 3]);
    let (mut s, mut first, m1) = video_pair(&server, suspect, v1, false).await;
    let (status, body) = frame(&server, v1, &first, FrameOf::Peer, Some(m1), &red()).await;
    assert_eq!((status, body.as_str()), (200, r#"{"flagged":true}"#), "the viewer is told to blur");
    // One viewer's word is not enough, however often it is said.
    assert_eq!(frame(&server, v1, &first, FrameOf::Peer, Some(m1), &red()).await.0, 200);
    s.send(&ClientMsg::Chat { match_id: m1, text: "still here".into() }).await;
    assert!(matches!(first.recv().await, ServerMsg::Chat { .. }), "the suspect was not banned");
    assert!(answered(suspect, server.addr).await);
    // A second, independent viewer agrees.
    first.send(&ClientMsg::Stop).await;
    assert!(matches!(s.recv().await, ServerMsg::PeerLeft { .. }));
    let mut second = Client::connect_from(v2, server.addr).await;
    second.join(Mode::Video, &[]).await;
    s.send(&ClientMsg::Next).await;
    let m2 = second.matched().await.id;
    assert_eq!(frame(&server, v2, &second, FrameOf::Peer, Some(m2), &red()).await.0, 200);
    assert!(matches!(s.recv().await, ServerMsg::Queued { .. } | ServerMsg::Matched { .. } | ServerMsg::Banned { .. }));
    let until = tokio::time::Instant::now() + WAIT;
    loop {
        match s.recv_or_close().await {
            Ok(ServerMsg::Banned { reason, .. }) => assert_eq!(reason, "nudity, seen by other users"),
            Ok(_) => {}
            Err(code) => {
                assert_eq!(code, close::BANNED);
                break;
            }
        }
        assert!(tokio::time::Instant::now() < until);
    }
    assert_eq!(second.recv().await, ServerMsg::PeerLeft { match_id: m2, reason: LeftReason::Banned });
    assert!(!answered(suspect, server.addr).await);
    assert!(answered(v1, server.addr).await && answered(v2, server.addr).await, "viewers are not banned");
}

#[tokio::test]
async fn reports_from_three_addresses_ban_and_one_address_counts_once() {
    let mut config = moderated(false);
    config.moderation = ModerationMode::Off;
    config.rematch_cooldown_secs = 0.0;
    let server = TestServer::start(config).await;
    let target = [127, 0, 5, 1];
    let mut t = Client::connect_from(target, server.addr).await;
    t.join(Mode::Text, &[]).await;
    for (n, from) in [[127, 0, 5, 2], [127, 0, 5, 2], [127, 0, 5, 3], [127, 0, 5, 4]].into_iter().enumerate() {
        let mut r = Client::connect_from(from, server.addr).await;
        r.join(Mode::Text, &[]).await;
        let m = r.matched().await.id;
        assert!(matches!(t.recv().await, ServerMsg::Matched { .. }));
        for _ in 0..3 {
            r.send(&ClientMsg::Report { match_id: m, reason: ReportReason::Harassment }).await;
        }
        if n < 3 {
            // The same address twice, then a second: two reporters so far.
            r.send(&ClientMsg::Stop).await;
            assert!(matches!(t.recv().await, ServerMsg::PeerLeft { .. }));
            t.send(&ClientMsg::Next).await;
            assert!(matches!(t.recv().await, ServerMsg::Queued { .. }));
            assert!(answered(target, server.addr).await, "banned after {} reporters", n);
        } else {
            let ServerMsg::Banned { reason, .. } = t.recv().await else { panic!("the third address bans") };
            assert_eq!(reason, "reported by other users");
            assert_eq!(t.expect_close().await, close::BANNED);
            assert_eq!(r.recv().await, ServerMsg::PeerLeft { match_id: m, reason: LeftReason::Banned });
        }
    }
    let (_, list) = admin(&server, "GET", "/admin/bans", "secret", "").await;
    assert!(list.contains(r#""kind":"reports""#) && list.contains(r#""strike":1"#), "{list}");
    assert!(!answered(target, server.addr).await);
}

#[tokio::test]
async fn the_admin_api_lists_adds_and_lifts_bans_behind_its_token() {
    let server = TestServer::start(moderated(false)).await;
    assert_eq!(admin(&server, "GET", "/admin/bans", "wrong", "").await.0, 401);
    let who = [127, 0, 6, 1];
    let mut c = Client::connect_from(who, server.addr).await;
    let (status, body) =
        admin(&server, "POST", "/admin/bans", "secret", r#"{"address":"127.0.6.1","reason":"spam bot","hours":2}"#)
            .await;
    assert_eq!(status, 201, "{body}");
    assert!(body.contains(r#""kind":"admin""#) && body.contains(r#""reason":"spam bot""#), "{body}");
    let ServerMsg::Banned { reason, .. } = c.recv().await else { panic!("an open session is ended") };
    assert_eq!(reason, "spam bot");
    assert_eq!(c.expect_close().await, close::BANNED);
    assert!(!answered(who, server.addr).await);
    assert_eq!(admin(&server, "POST", "/admin/bans", "secret", r#"{"address":"nope"}"#).await.0, 400);
    assert_eq!(admin(&server, "DELETE", "/admin/bans/127.0.6.1", "secret", "").await.0, 200);
    assert!(answered(who, server.addr).await, "lifted");
    assert_eq!(admin(&server, "DELETE", "/admin/bans/127.0.6.1", "secret", "").await.0, 404);
    // IPv6 blocks are accepted as written.
    assert_eq!(admin(&server, "POST", "/admin/bans", "secret", r#"{"address":"2001:db8:1:2::/64"}"#).await.0, 201);
    let (_, list) = admin(&server, "GET", "/admin/bans", "secret", "").await;
    assert!(list.contains("2001:db8:1:2::/64"), "{list}");
}
