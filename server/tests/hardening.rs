//! Hostile clients against a real server: half-sent requests, connection floods from
//! one address, message floods, oversized frames, resume loops; and the `hello`
//! greeting that keeps resume tokens out of URLs.

mod common;

use common::*;
use futures_util::SinkExt;
use protocol::{ClientMsg, Mode, ServerMsg, close};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// Reads until the server closes the connection; how long that took, or `None` if it
/// was still open after `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let wait = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, wait).await.ok().map(|_| start.elapsed())
}

#[tokio::test]
async fn a_half_sent_request_header_is_closed_after_the_header_timeout() {
    let mut cfg = config();
    cfg.header_timeout_secs = 1.0;
    let server = TestServer::start(cfg).await;
    let mut partial = TcpStream::connect(server.addr).await.unwrap();
    partial.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    for stream in [&mut partial, &mut silent] {
        let took = closed_within(stream, Duration::from_secs(5)).await.expect("closed by the server");
        assert!(took < Duration::from_secs(3), "closed after {took:?}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_half_open_sockets_from_one_address_do_not_keep_a_new_user_out() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let mut cfg = config();
    // The production caps: 20 WebSockets and 64 connections per address.
    cfg.max_conn_per_ip = 20;
    let server = TestServer::start(cfg).await;
    let mut attackers = Vec::new();
    for _ in 0..1000 {
        let Ok(mut s) = tokio::time::timeout(Duration::from_secs(2), tcp_from([127, 0, 0, 1], server.addr)).await
        else {
            continue;
        };
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n").await;
        attackers.push(s);
    }
    // A new visitor from another address loads the page at once.
    let start = Instant::now();
    let mut user = tcp_from([127, 0, 0, 2], server.addr).await;
    user.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut page = String::new();
    tokio::time::timeout(Duration::from_secs(5), user.read_to_string(&mut page)).await.unwrap().unwrap();
    assert!(page.starts_with("HTTP/1.1 200"), "{}", &page[..page.len().min(200)]);
    assert!(start.elapsed() < Duration::from_secs(5));
    // The address's cap (64 by default) holds: the rest were closed at once.
    let mut open = 0;
    for s in &mut attackers {
        let mut byte = [0u8; 1];
        if tokio::time::timeout(Duration::from_millis(1), s.read(&mut byte)).await.is_err() {
            open += 1;
        }
    }
    assert!(open <= 64, "{open} half-open sockets are still being served");
    server.stop().await;
}

#[tokio::test]
async fn a_flooder_always_reads_1008_and_an_oversized_frame_always_reads_1009() {
    let mut cfg = config();
    cfg.rate_burst = 10;
    cfg.flood_strikes = 20;
    let server = TestServer::start(cfg).await;
    for round in 0..5 {
        // Far more than it takes: the rest is still unread when the server closes.
        let mut a = server.client().await;
        let flood: Vec<_> = (0..2_000).map(|_| Ok(Message::text(r#"{"type":"stop"}"#))).collect();
        let _ = a.ws.send_all(&mut futures_util::stream::iter(flood)).await;
        assert_eq!(a.expect_close().await, close::POLICY, "flood, round {round}");

        let mut b = server.client().await;
        let huge = format!(r#"{{"type":"chat","text":"{}"}}"#, "x".repeat(200 * 1024));
        let _ = b.ws.send(Message::text(huge)).await;
        assert_eq!(b.expect_close().await, close::TOO_LARGE, "oversized, round {round}");
    }
    server.stop().await;
}

#[tokio::test]
async fn hello_carries_the_resume_token_and_the_query_form_still_works() {
    let mut cfg = config();
    cfg.header_timeout_secs = 1.0;
    let server = TestServer::start(cfg).await;
    let hello = |token: Option<String>| ClientMsg::Hello { resume_token: token };
    // A new session by hello.
    let (ws, _) = tokio_tungstenite::connect_async(format!("{}?hello=1", server.url())).await.unwrap();
    let mut a = Client::after_hello(ws, &hello(None)).await;
    assert!(!a.resumed);
    a.join(Mode::Text, &[]).await;
    let (session, first_token) = (a.session, a.token.clone());
    a.drop_connection();
    // Resumed by hello, with a fresh token.
    let (ws, _) = tokio_tungstenite::connect_async(format!("{}?hello=1", server.url())).await.unwrap();
    let a2 = Client::after_hello(ws, &hello(Some(first_token.to_string()))).await;
    assert!(a2.resumed && a2.session == session && a2.token != first_token);
    // The old form: ?resume= with the latest token.
    let token = a2.token.clone();
    a2.drop_connection();
    let a3 = server.resume(&token).await;
    assert!(a3.resumed && a3.session == session);
    // A socket that promised a hello and sends something else, or nothing, is closed.
    let (ws, _) = tokio_tungstenite::connect_async(format!("{}?hello=1", server.url())).await.unwrap();
    let mut wrong = Client::raw(ws);
    wrong.send(&ClientMsg::Stop).await;
    assert_eq!(wrong.expect_close().await, close::POLICY);
    let (ws, _) = tokio_tungstenite::connect_async(format!("{}?hello=1", server.url())).await.unwrap();
    let mut mute = Client::raw(ws);
    assert_eq!(mute.expect_close().await, close::POLICY);
    // hello later on is refused and changes nothing.
    let mut b = server.client().await;
    b.send(&hello(None)).await;
    assert!(matches!(b.recv().await, ServerMsg::Error { code: protocol::ErrorCode::NotAllowed, .. }));
    server.stop().await;
}

#[tokio::test]
async fn resume_loops_deliver_at_most_the_session_s_budget_and_a_few_peer_resumed() {
    let server = TestServer::start(config()).await;
    let (mut a, mut b, id) = matched_pair(&server).await;
    a.send(&ClientMsg::Ready { match_id: id }).await;
    b.send(&ClientMsg::Ready { match_id: id }).await;
    let mut token = a.token.clone();
    a.drop_connection();
    let (mut resumed, mut refused) = (0, 0);
    for cycle in 0..20 {
        let (ws, _) = tokio_tungstenite::connect_async(format!("{}?resume={token}", server.url())).await.unwrap();
        let mut c = Client::raw(ws);
        match c.recv_or_close().await {
            Ok(ServerMsg::Welcome { resume_token, resumed: true, .. }) => {
                resumed += 1;
                token = resume_token;
                let chats: Vec<_> = (0..100)
                    .map(|n| {
                        Ok(Message::text(ClientMsg::Chat { match_id: id, text: format!("{cycle}.{n}") }.to_json()))
                    })
                    .collect();
                let _ = c.ws.send_all(&mut futures_util::stream::iter(chats)).await;
                // Let the server read them before the drop.
                tokio::time::sleep(Duration::from_millis(20)).await;
                c.drop_connection();
            }
            Ok(other) => panic!("{other:?}"),
            Err(code) => {
                assert_eq!(code, close::POLICY);
                refused += 1;
            }
        }
    }
    // What b got: chats, peer_reconnecting, peer_resumed, rate-limit errors are a's.
    let (mut chats, mut peer_resumed) = (0, 0);
    while let Ok(msg) = tokio::time::timeout(Duration::from_millis(500), b.recv()).await {
        match msg {
            ServerMsg::Chat { .. } => chats += 1,
            ServerMsg::PeerResumed { .. } => peer_resumed += 1,
            _ => {}
        }
    }
    assert_eq!((resumed, refused), (5, 15), "a burst of five resumes, then one per 10 s");
    assert!(peer_resumed <= 5, "{peer_resumed} peer_resumed");
    // 100 messages of burst, plus 50/s for the second or so this took.
    assert!(chats <= 100 + 100, "{chats} chats delivered");
    assert!(chats >= 90, "{chats} chats delivered");
    server.stop().await;
}
