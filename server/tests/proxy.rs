//! Behind a real HAProxy (Debian's 2.6, started on a free loopback port with
//! `deploy/haproxy.cfg`): the PROXY v2 header names the client, only trusted balancers
//! are believed, and a draining node fails its health check before closing its sockets.

mod common;

use common::{Client, TestServer, WAIT, config, http_get, tcp_from};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::MaybeTlsStream;

/// HAProxy running the deployment's file in front of `node` alone.
async fn haproxy(node: SocketAddr) -> common::cluster::Haproxy {
    common::cluster::Haproxy::start([node, node, node]).await
}

/// One `GET` from the loopback address `from`; the whole response, or "" if the
/// connection was refused or closed without one.
async fn get_from(from: [u8; 4], to: SocketAddr, path: &str) -> String {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    let Ok(mut stream) = socket.connect(to).await else { return String::new() };
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut body = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut body)).await;
    String::from_utf8_lossy(&body).into_owned()
}

/// A WebSocket through `to` from `from`: its `welcome`, or why there was none.
async fn ws_from(from: [u8; 4], to: SocketAddr) -> Result<Client, String> {
    let stream = tcp_from(from, to).await;
    let url = format!("ws://{to}/ws");
    match tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))).await {
        Ok(Ok((ws, _))) => Ok(Client::after_upgrade(ws).await),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer".into()),
    }
}

fn trusting_loopback_balancer() -> server::Config {
    let mut c = config();
    c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    c
}

#[tokio::test]
async fn behind_haproxy_each_client_is_capped_by_its_own_address() {
    let mut c = trusting_loopback_balancer();
    c.max_conn_per_ip = 2;
    c.max_sockets_per_ip = Some(2);
    let server = TestServer::start(c).await;
    let lb = haproxy(server.addr).await;

    // Every connection reaches the node from 127.0.0.1 (HAProxy), yet the cap counts
    // the clients behind it: two from 127.0.0.2 are in, a third is not; 127.0.0.3 is
    // someone else.
    let _a = ws_from([127, 0, 0, 2], lb.addr).await.expect("first from .2");
    let _b = ws_from([127, 0, 0, 2], lb.addr).await.expect("second from .2");
    assert!(ws_from([127, 0, 0, 2], lb.addr).await.is_err(), "a third from .2 is over its cap");
    let _c = ws_from([127, 0, 0, 3], lb.addr).await.expect("another address has its own cap");
    let _d = ws_from([127, 0, 0, 3], lb.addr).await.expect("and its own second");
    server.stop().await;
}

#[tokio::test]
async fn only_a_trusted_balancer_is_believed_and_it_must_send_a_header() {
    let server = TestServer::start(trusting_loopback_balancer()).await;

    // From an untrusted address the header is not read: it is a bad request.
    let client: SocketAddr = "203.0.113.7:5000".parse().unwrap();
    let spoof = header(ppp::v2::Command::Proxy, (client, server.addr));
    let answer = health_after([127, 0, 0, 5], server.addr, &spoof).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "an untrusted PROXY header is garbage: {answer:?}");

    // From the trusted balancer, plain HTTP without a header is closed unanswered.
    assert_eq!(get_from([127, 0, 0, 1], server.addr, "/healthz").await, "", "no header, no answer");
    // With one, it is served as the client it names.
    let answer = health_after([127, 0, 0, 1], server.addr, &spoof).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");

    let metrics = http_get(server.metrics_addr.unwrap(), "/metrics").await;
    assert!(metrics.contains("letsmeet_proxy_header_refused_total 1"), "{metrics}");
    server.stop().await;
}

#[tokio::test]
async fn behind_the_balancer_a_banned_client_is_closed_right_after_its_header() {
    let server = TestServer::start(trusting_loopback_balancer()).await;
    let banned: SocketAddr = "198.51.100.7:5000".parse().unwrap();
    let other: SocketAddr = "198.51.100.8:5000".parse().unwrap();
    let bans = server.hub.bans().unwrap();
    let order = server::bans::BanOrder {
        ip: banned.ip(),
        kind: server::bans::BanKind::Admin,
        reason: "test".into(),
        duration: None,
    };
    bans.issue(order, server::bans::unix_ms());
    let refused =
        health_after([127, 0, 0, 1], server.addr, &header(ppp::v2::Command::Proxy, (banned, server.addr))).await;
    assert_eq!(refused, "", "closed after the header, before any byte of a response");
    let served =
        health_after([127, 0, 0, 1], server.addr, &header(ppp::v2::Command::Proxy, (other, server.addr))).await;
    assert!(served.starts_with("HTTP/1.1 200"), "{served:?}");
    let metrics = http_get(server.metrics_addr.unwrap(), "/metrics").await;
    assert!(metrics.contains("letsmeet_banned_connections_refused_total 1"), "{metrics}");
    server.stop().await;
}

#[tokio::test]
async fn a_draining_node_fails_its_health_check_then_closes_its_sockets_with_1012() {
    let mut c = trusting_loopback_balancer();
    c.drain_delay_secs = 1.5;
    let mut server = TestServer::start(c).await;
    let lb = haproxy(server.addr).await;
    let mut client = ws_from([127, 0, 0, 2], lb.addr).await.expect("in through HAProxy");

    let began = tokio::time::Instant::now();
    server.begin_stop();
    // At once: the health check (as HAProxy sends it, with a LOCAL header) fails, so
    // HAProxy stops sending users here...
    let local = header(ppp::v2::Command::Local, ppp::v2::Addresses::Unspecified);
    let health = health_after([127, 0, 0, 1], server.addr, &local).await;
    assert!(health.starts_with("HTTP/1.1 503") && health.ends_with("draining"), "{health:?}");
    // ...while the users already here keep their sockets until the delay is over.
    client.expect_silence(Duration::from_millis(800)).await;
    assert_eq!(client.expect_close().await, protocol::close::SERVICE_RESTART);
    assert!(began.elapsed() >= Duration::from_millis(1400), "closed after {:?}", began.elapsed());
    server.join().await;
}

/// A PROXY v2 header for a TCP stream.
fn header(command: ppp::v2::Command, addresses: impl Into<ppp::v2::Addresses>) -> Vec<u8> {
    let version = ppp::v2::Version::Two | command;
    ppp::v2::Builder::with_addresses(version, ppp::v2::Protocol::Stream, addresses).build().unwrap()
}

/// `GET /healthz` from `from` straight to `node`, after `prefix`: the whole answer.
async fn health_after(from: [u8; 4], node: SocketAddr, prefix: &[u8]) -> String {
    let mut stream = tcp_from(from, node).await;
    stream.write_all(prefix).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    answer
}
