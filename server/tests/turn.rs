//! TURN against a real coturn (`turnserver` from the coturn package) running
//! `deploy/turnserver.conf` on a free loopback port, stopped afterwards: the credentials
//! the server hands out, and the production relay rules (no private or loopback peer).

mod common;

use common::*;
use protocol::*;
use server::ice::{TurnSecret, turn_credential, turn_username};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SECRET: &str = "integration-test-secret-0123";

/// Which peers coturn may relay to.
#[derive(Clone, Copy, PartialEq)]
enum Peers {
    /// `deploy/turnserver.conf` as it is: no private, loopback, link-local... peer.
    Production,
    /// Plus the test-only loopback override (`end2end/relay.test.mjs` uses it too), so that
    /// allocations on 127.0.0.1 reach each other and a peer on 127.0.0.1.
    Loopback,
}

struct Coturn {
    child: Child,
    port: u16,
    /// What coturn logged (on stdout) so far.
    log: Arc<Mutex<String>>,
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// REST credentials for `user`, valid for 10 minutes: a fresh user for each `uclient` run,
/// as browser sessions have. (A run that fails leaves its allocations behind until they
/// expire, and `user-quota` counts them.)
fn credentials(user: &str) -> (String, String) {
    let username = turn_username(unix_now() + 600, user);
    let password = turn_credential(&SECRET.parse().unwrap(), &username);
    (username, password)
}

impl Coturn {
    /// Starts coturn on a free port and waits until it answers. The port is free when
    /// picked, but another process may take it (or its TCP twin) before coturn binds
    /// it: then coturn does not answer, and a fresh port is tried, up to three times.
    fn start(peers: Peers) -> Self {
        for _ in 0..3 {
            let coturn = Self::start_once(peers);
            if coturn.wait_until_it_answers() {
                return coturn;
            }
            eprintln!("coturn did not answer STUN on port {} within 10 s; trying another port", coturn.port);
        }
        panic!("coturn did not start on three free ports");
    }

    fn start_once(peers: Peers) -> Self {
        let port = free_udp_port();
        // 100 relay ports for each coturn, a different block for each one this process starts.
        // (A uclient run that fails leaves its allocations, up to four ports, until they expire.)
        static STARTED: AtomicU16 = AtomicU16::new(0);
        let block = (std::process::id() % 50) as u16 * 3 + STARTED.fetch_add(1, Ordering::Relaxed) % 3;
        let relay_base = 50_000 + block * 100;
        let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/turnserver.conf");
        let mut command = Command::new("turnserver");
        // The deployment's file, and on top of it only what a test needs: loopback addresses,
        // free ports, the test's secret (coturn accepts each static-auth-secret it is given),
        // no TLS or DTLS (no certificate here), the log on stdout.
        command.args([
            "-c",
            conf,
            "--listening-ip=127.0.0.1",
            &format!("--listening-port={port}"),
            "--relay-ip=127.0.0.1",
            &format!("--min-port={relay_base}"),
            &format!("--max-port={}", relay_base + 99),
            &format!("--static-auth-secret={SECRET}"),
            "--no-tls",
            "--no-dtls",
            "--log-file=stdout",
            "--simple-log",
        ]);
        if peers == Peers::Loopback {
            command.args(["--allowed-peer-ip=127.0.0.1", "--allow-loopback-peers"]);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnserver (Debian package coturn) is installed; scripts/install.sh installs it");
        let log = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = log.clone();
        // Ends when coturn does (its stdout closes).
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).split(b'\n') {
                let Ok(line) = line else { break };
                let mut log = sink.lock().unwrap();
                log.push_str(&String::from_utf8_lossy(&line));
                log.push('\n');
            }
        });
        Self { child, port, log }
    }

    /// Sends STUN binding requests until coturn answers one (it is listening): whether
    /// it did within 10 s.
    fn wait_until_it_answers(&self) -> bool {
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
                return true;
            }
        }
        false
    }

    /// Runs `turnutils_uclient` with `args` against this coturn: whether it succeeded, and
    /// its exit status followed by what it printed (stdout, then stderr).
    fn uclient(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("timeout")
            .args(["20", "turnutils_uclient"])
            .args(args)
            .args(["-p", &self.port.to_string(), "127.0.0.1"])
            .stdin(Stdio::null())
            .output()
            .expect("turnutils_uclient (coturn package) runs");
        let text =
            format!("{}\n{}{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    /// Runs one TURN allocation with `turnutils_uclient`; true when it succeeded.
    fn allocate(&self, username: &str, password: &str) -> bool {
        self.uclient(&["-n", "1", "-m", "1", "-y", "-u", username, "-w", password]).0
    }

    /// An allocation for `user` that asks for a channel to `peer` (a permission with `send`),
    /// and sends `messages` to it: `-c`, no RTCP allocation that would send one anyway.
    fn relay(&self, user: &str, peer: (&str, u16), send: bool, messages: u32) -> (bool, String) {
        let (username, password) = credentials(user);
        let (port, messages) = (peer.1.to_string(), messages.to_string());
        let mut args = vec!["-v", "-c", "-m", "1", "-n", &messages, "-e", peer.0, "-r", &port];
        args.extend(["-u", &username, "-w", &password]);
        if send {
            args.push("-s");
        }
        self.uclient(&args)
    }

    /// Whether coturn logs a line containing `text` within 2 s.
    fn logs(&self, text: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.log.lock().unwrap().contains(text) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `turnutils_peer`: a UDP echo server on a free loopback port.
struct EchoPeer {
    child: Child,
    port: u16,
}

impl EchoPeer {
    fn start() -> Self {
        let port = free_udp_port();
        let child = Command::new("turnutils_peer")
            .args(["-L", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnutils_peer (coturn package) runs");
        Self { child, port }
    }
}

impl Drop for EchoPeer {
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
    let coturn = Coturn::start(Peers::Loopback);
    let mut cfg = config();
    cfg.turn_urls = vec![format!("turn:127.0.0.1:{}?transport=udp", coturn.port)];
    cfg.turn_secret = Some(SECRET.parse().unwrap());
    cfg.turn_ttl_secs = 600;
    let server = TestServer::start(cfg).await;

    // The welcome says a relay exists but carries no credential: a socket that never
    // joins collects none.
    let mut a = server.client().await;
    let ServerMsg::Welcome { ice_servers, relay: true, .. } = &a.welcome else { panic!("{:?}", a.welcome) };
    assert!(ice_servers.iter().all(|s| s.username.is_none() && s.credential.is_none()), "{ice_servers:?}");

    // Each match brings a credential for this session, valid for the TTL.
    let mut b = server.client().await;
    a.join(Mode::Video, &[]).await;
    b.join(Mode::Video, &[]).await;
    let ServerMsg::Matched { ice_servers: Some(fresh), .. } = a.recv().await else {
        panic!("matched without ICE servers")
    };
    let turn = turn_entry(&fresh);
    let username = turn.username.clone().unwrap();
    let (expiry, who) = username.split_once(':').unwrap();
    assert_eq!(who, a.session.to_string());
    let now = unix_now();
    let expiry: u64 = expiry.parse().unwrap();
    assert!((now + 595..=now + 605).contains(&expiry), "expiry {expiry} vs now {now}");

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

/// Peers the production configuration refuses, with the `denied-peer-ip` range coturn logs
/// for each (none where coturn refuses by itself: loopback without `allow-loopback-peers`,
/// the zero address).
const DENIED_PEERS: &[(&str, Option<&str>)] = &[
    ("10.0.0.1", Some("10.0.0.0-10.255.255.255")),
    ("172.16.0.1", Some("172.16.0.0-172.31.255.255")),
    ("192.168.1.1", Some("192.168.0.0-192.168.255.255")),
    ("100.64.0.1", Some("100.64.0.0-100.127.255.255")),
    ("169.254.169.254", Some("169.254.0.0-169.254.255.255")),
    ("127.0.0.1", None),
    ("0.0.0.0", None),
];

#[test]
fn the_production_config_refuses_to_relay_to_private_or_loopback_peers() {
    let production = Coturn::start(Peers::Production);
    let loopback = Coturn::start(Peers::Loopback);
    let echo = EchoPeer::start();

    std::thread::scope(|s| {
        // The control: the same request to an allowed peer succeeds, and relays a message
        // there and back. (uclient waits 1 to 6 s before it sends: these run meanwhile.)
        let asked = s.spawn(|| loopback.relay("asks", ("127.0.0.1", echo.port), false, 0));
        let relayed = s.spawn(|| loopback.relay("sends", ("127.0.0.1", echo.port), false, 1));

        // Nothing is ever sent to a refused peer (`-n 0`), even if coturn let it through.
        for &(peer, range) in DENIED_PEERS {
            for (send, refusal) in [
                (false, "channel bind: error 403 (Forbidden IP)"),
                (true, "create permission error 403 (Forbidden IP)"),
            ] {
                let (ok, out) = production.relay(&format!("{peer}-{send}"), (peer, 3480), send, 0);
                assert!(out.contains("Received relay addr"), "no allocation before asking for {peer}:\n{out}");
                assert!(!ok && out.contains(refusal), "a relay to {peer} was not refused ({refusal}):\n{out}");
            }
            if let Some(range) = range {
                let line = format!("A peer IP {peer} denied in the range: {range}");
                assert!(production.logs(&line), "coturn did not log {line:?}:\n{}", production.log.lock().unwrap());
            }
        }

        let (ok, out) = asked.join().unwrap();
        assert!(ok && out.contains("Received relay addr") && !out.contains("error"), "control (-n 0) failed:\n{out}");
        let (ok, out) = relayed.join().unwrap();
        assert!(ok && out.contains("tot_recv_bytes ~ 100") && out.contains("Total lost packets 0 "), "control:\n{out}");
    });

    // no-tcp-relay: a TCP relay (RFC 6062) is refused at the allocation.
    let (username, password) = credentials("tcp");
    let (ok, out) = production.uclient(&["-v", "-T", "-n", "0", "-m", "1", "-u", &username, "-w", &password]);
    assert!(!ok && out.contains("error 442") && !out.contains("Received relay addr"), "TCP relay:\n{out}");
    // The file is read whole: no line coturn could not parse.
    assert!(!production.log.lock().unwrap().contains("Wrong address format"), "{}", production.log.lock().unwrap());
}
