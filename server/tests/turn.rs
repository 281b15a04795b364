//! TURN credentials against a real coturn (`turnserver` from the coturn package),
//! started on a free loopback port with a shared secret and stopped afterwards.

mod common;

use common::*;
use protocol::*;
use server::ice::{TurnSecret, turn_credential, turn_username};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECRET: &str = "integration-test-secret-0123";

struct Coturn {
    child: Child,
    port: u16,
}

impl Coturn {
    fn start() -> Self {
        let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let relay_base = 50_000 + (std::process::id() % 500) as u16 * 20;
        // The deployment's hardened configuration, with the test-only loopback override.
        let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/turnserver.conf");
        let child = Command::new("turnserver")
            .args([
                "-c",
                conf,
                "--allowed-peer-ip=127.0.0.1",
                "--listening-ip=127.0.0.1",
                &format!("--listening-port={port}"),
                "--relay-ip=127.0.0.1",
                &format!("--min-port={relay_base}"),
                &format!("--max-port={}", relay_base + 19),
                "--use-auth-secret",
                &format!("--static-auth-secret={SECRET}"),
                "--realm=letsmeet.test",
                "--no-cli",
                "--no-tls",
                "--no-dtls",
                "--fingerprint",
                "--allow-loopback-peers",
                "--log-file=stdout",
                "--simple-log",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnserver (Debian package coturn) is installed; scripts/install.sh installs it");
        let coturn = Self { child, port };
        coturn.wait_until_it_answers();
        coturn
    }

    /// Sends STUN binding requests until coturn answers one (it is listening).
    fn wait_until_it_answers(&self) {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        // Binding request, no attributes, the magic cookie, a fixed transaction id.
        let mut request = [0u8; 20];
        request[..2].copy_from_slice(&1u16.to_be_bytes());
        request[4..8].copy_from_slice(&0x2112_a442u32.to_be_bytes());
        let mut answer = [0u8; 512];
        for _ in 0..100 {
            socket.send_to(&request, ("127.0.0.1", self.port)).unwrap();
            if socket.recv(&mut answer).is_ok() {
                return;
            }
        }
        panic!("coturn did not answer STUN on port {} within 10 s", self.port);
    }

    /// Runs one TURN allocation with `turnutils_uclient`; true when it succeeded.
    fn allocate(&self, username: &str, password: &str) -> bool {
        let status = Command::new("timeout")
            .args(["20", "turnutils_uclient", "-n", "1", "-m", "1", "-y", "-u", username, "-w", password])
            .args(["-p", &self.port.to_string(), "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("turnutils_uclient (coturn package) runs");
        status.success()
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn turn_entry(servers: &[IceServer]) -> IceServer {
    servers.iter().find(|s| s.username.is_some()).cloned().expect("a TURN entry with credentials")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_accepts_fresh_credentials_and_refuses_expired_or_forged_ones() {
    let coturn = Coturn::start();
    let mut cfg = config();
    cfg.turn_urls = vec![format!("turn:127.0.0.1:{}?transport=udp", coturn.port)];
    cfg.turn_secret = Some(SECRET.parse().unwrap());
    cfg.turn_ttl_secs = 600;
    let server = TestServer::start(cfg).await;

    // The welcome carries a credential for this session, valid for the TTL.
    let mut a = server.client().await;
    let ServerMsg::Welcome { ice_servers, .. } = &a.welcome else { unreachable!() };
    let turn = turn_entry(ice_servers);
    let username = turn.username.clone().unwrap();
    let (expiry, who) = username.split_once(':').unwrap();
    assert_eq!(who, a.session.to_string());
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let expiry: u64 = expiry.parse().unwrap();
    assert!((now + 595..=now + 605).contains(&expiry), "expiry {expiry} vs now {now}");

    // Each match brings a fresh credential.
    let mut b = server.client().await;
    a.join(Mode::Video, &[]).await;
    b.join(Mode::Video, &[]).await;
    let ServerMsg::Matched { ice_servers: Some(fresh), .. } = a.recv().await else {
        panic!("matched without ICE servers")
    };
    assert_eq!(turn_entry(&fresh).username.unwrap().split_once(':').unwrap().1, a.session.to_string());

    let password = turn.credential.unwrap();
    let allocate = |u: String, p: String| coturn.allocate(&u, &p);
    assert!(tokio::task::block_in_place(|| allocate(username.clone(), password.clone())), "a fresh credential works");
    assert!(!tokio::task::block_in_place(|| allocate(username.clone(), "Zm9yZ2Vk".into())), "a forged one fails");
    let secret: TurnSecret = SECRET.parse().unwrap();
    let old = turn_username(now - 10, &a.session.to_string());
    let old_password = turn_credential(&secret, &old);
    assert!(!tokio::task::block_in_place(|| allocate(old, old_password)), "an expired one fails");
    let other: TurnSecret = "some-other-secret-value".parse().unwrap();
    let wrong_key = turn_credential(&other, &username);
    assert!(
        !tokio::task::block_in_place(|| allocate(username.clone(), wrong_key)),
        "one signed with another secret fails"
    );
    server.stop().await;
}

#[tokio::test]
async fn turn_urls_without_a_secret_are_refused_at_start() {
    let mut cfg = config();
    cfg.turn_urls = vec!["turn:127.0.0.1:3478".into()];
    let Err(err) = server::site::router(&cfg) else { panic!("TURN URLs without a secret were accepted") };
    assert!(err.to_string().contains("--turn-secret"), "{err}");
}
