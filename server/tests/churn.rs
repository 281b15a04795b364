//! Churn: a few hundred simulated clients join, signal, chat, skip, stop, reconnect
//! and vanish at random for a bounded time. Afterwards every internal table is empty,
//! and no client ever received a signal or chat from anyone but its current peer.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use protocol::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const CLIENTS: usize = 300;
const RUN_FOR: Duration = Duration::from_secs(6);
/// Resumes per session, under the server's burst of 5 (a faster client is refused).
const MAX_RESUMES: u32 = 4;
const TOPICS: [&str; 20] = [
    "music", "movies", "chess", "go", "art", "books", "rust", "games", "travel", "food", "cats", "dogs", "anime",
    "football", "tennis", "science", "history", "memes", "cooking", "hiking",
];

/// Who is in which match, as each side reported on `matched`.
type Registry = Arc<Mutex<HashMap<MatchId, Vec<SessionId>>>>;

#[derive(Default)]
struct Counters {
    matched: AtomicU64,
    relayed: AtomicU64,
    stale: AtomicU64,
    reconnects: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_clients_churning_leave_nothing_behind_and_never_cross_talk() {
    let mut cfg = config();
    cfg.grace_secs = 1.0;
    cfg.interest_fallback_secs = 0.3;
    cfg.rematch_cooldown_secs = 1.0;
    // Time runs about a hundred times faster here than for people: so do searches.
    cfg.joins_per_sec = 1_000;
    cfg.join_burst = 1_000;
    let server = TestServer::start(cfg).await;
    let registry: Registry = Arc::default();
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + RUN_FOR;
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let url = server.url();
            let registry = registry.clone();
            let counters = counters.clone();
            tokio::spawn(async move { simulate(i as u64, url, deadline, registry, counters).await })
        })
        .collect();
    for t in tasks {
        t.await.expect("a simulated client panicked (see above)");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let matches = counters.matched.load(Ordering::Relaxed) / 2;
    // The figure for the record (shown with --nocapture).
    eprintln!(
        "churn: {CLIENTS} clients for {elapsed:.1} s: {matches} matches ({:.0}/s), {} relayed messages ({:.0}/s), \
         {} stale races, {} reconnects",
        matches as f64 / elapsed,
        counters.relayed.load(Ordering::Relaxed),
        counters.relayed.load(Ordering::Relaxed) as f64 / elapsed,
        counters.stale.load(Ordering::Relaxed),
        counters.reconnects.load(Ordering::Relaxed),
    );
    assert!(matches > CLIENTS as u64, "the run made progress: {matches} matches");
    // Every socket is closed; once the grace period has passed nothing remains.
    server.wait_stats(|s| s.live_sockets == 0).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let stats = server.wait_stats(|s| s.is_empty()).await;
    assert_eq!(stats.sessions + stats.tokens + stats.waiting + stats.in_match + stats.grace_timers, 0, "{stats:?}");
    server.stop().await;
}

struct Sim {
    rng: Lcg,
    ws: Ws,
    session: SessionId,
    token: ResumeToken,
    current: Option<MatchId>,
    /// A match this client left (next/stop) that the server may not have ended yet:
    /// messages the peer sent before the server saw ours can still arrive, until the
    /// server confirms with `queued` or `matched`.
    leaving: Option<MatchId>,
    /// Resumes of this session so far: the server allows a burst of
    /// `hub::config::RESUME_RATE` (5) before it closes one with 1008.
    resumes: u32,
    registry: Registry,
    counters: Arc<Counters>,
}

fn sender_of(text: &str) -> SessionId {
    text.rsplit(' ').next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no sender in {text:?}"))
}

impl Sim {
    async fn send(&mut self, msg: ClientMsg) {
        // A socket closed under us (e.g. replaced) shows up on the next read.
        let _ = self.ws.send(Message::text(msg.to_json())).await;
    }

    async fn connect(url: &str, resume: Option<&ResumeToken>) -> (Ws, SessionId, ResumeToken) {
        let url = match resume {
            Some(t) => format!("{url}?resume={t}"),
            None => url.to_string(),
        };
        let c = Client::connect(&url).await;
        (c.ws, c.session, c.token)
    }

    async fn join(&mut self) {
        let n = (self.rng.next() % 4) as usize;
        let interests = (0..n).map(|_| TOPICS[self.rng.next() as usize % TOPICS.len()].to_string()).collect();
        self.send(ClientMsg::Join(Preferences { interests, ..Preferences::new(Mode::Video) })).await;
    }

    /// Checks that a relayed message belongs to the current match and comes from its peer.
    fn check(&self, match_id: MatchId, text: &str) {
        assert!(
            Some(match_id) == self.current || Some(match_id) == self.leaving,
            "a message for match {match_id}, current {:?}, leaving {:?}",
            self.current,
            self.leaving
        );
        let from = sender_of(text);
        assert_ne!(from, self.session, "a message from myself");
        let registry = self.registry.lock().unwrap();
        let members = registry.get(&match_id).expect("the match was registered");
        assert!(members.contains(&from), "{from} is not in match {match_id}: {members:?}");
        self.counters.relayed.fetch_add(1, Ordering::Relaxed);
    }

    async fn on(&mut self, msg: ServerMsg) {
        let me = self.session;
        match msg {
            ServerMsg::Matched { match_id, role, .. } => {
                self.current = Some(match_id);
                self.leaving = None;
                self.counters.matched.fetch_add(1, Ordering::Relaxed);
                {
                    let mut reg = self.registry.lock().unwrap();
                    let members = reg.entry(match_id).or_default();
                    if !members.contains(&me) {
                        members.push(me);
                    }
                    assert!(members.len() <= 2, "three sessions in one match: {members:?}");
                }
                self.send(ClientMsg::Ready { match_id }).await;
                if role == Role::Offerer {
                    let sdp = format!("v=0 {} offer from {me}", "s".repeat(4000));
                    self.send(ClientMsg::Signal { match_id, payload: SignalPayload::Offer { sdp }, generation: None })
                        .await;
                }
            }
            ServerMsg::Signal { match_id, payload, .. } => match payload {
                SignalPayload::Offer { sdp } => {
                    self.check(match_id, &sdp);
                    let sdp = format!("v=0 answer from {me}");
                    self.send(ClientMsg::Signal { match_id, payload: SignalPayload::Answer { sdp }, generation: None })
                        .await;
                    self.candidates(match_id).await;
                }
                SignalPayload::Answer { sdp } => {
                    self.check(match_id, &sdp);
                    self.candidates(match_id).await;
                    self.send(ClientMsg::Chat { match_id, text: format!("hello from {me}") }).await;
                }
                SignalPayload::Candidate { candidate, .. } => self.check(match_id, &candidate),
                SignalPayload::EndOfCandidates => panic!("not sent in this test"),
            },
            ServerMsg::Chat { match_id, text } => {
                self.check(match_id, &text);
                if self.rng.next().is_multiple_of(2) {
                    self.send(ClientMsg::Chat { match_id, text: format!("reply from {me}") }).await;
                }
            }
            ServerMsg::PeerLeft { match_id, .. } => {
                if Some(match_id) == self.current {
                    self.current = None;
                    self.send(ClientMsg::Next).await;
                } else {
                    assert_eq!(Some(match_id), self.leaving, "peer_left for a match I was not in");
                }
            }
            ServerMsg::PeerReconnecting { match_id } | ServerMsg::PeerResumed { match_id, .. } => {
                assert!(Some(match_id) == self.current || Some(match_id) == self.leaving);
            }
            ServerMsg::Error { code: ErrorCode::StaleMatch, .. } => {
                // Legitimate race: the match ended while our message was in flight.
                self.counters.stale.fetch_add(1, Ordering::Relaxed);
            }
            ServerMsg::Error { code: ErrorCode::NotAllowed, .. } => {
                // Legitimate race: a `join` crossed a `matched`.
            }
            ServerMsg::Error { code, message, .. } => panic!("unexpected error {code:?}: {message}"),
            ServerMsg::Queued { .. } => self.leaving = None,
            ServerMsg::Online(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    async fn candidates(&mut self, match_id: MatchId) {
        let me = self.session;
        for n in 0..3 {
            let candidate = format!("candidate:{n} 1 udp 2122260223 127.0.0.1 5{n}000 typ host from {me}");
            let payload = SignalPayload::Candidate { candidate, sdp_mid: Some("0".into()), sdp_m_line_index: Some(0) };
            self.send(ClientMsg::Signal { match_id, payload, generation: None }).await;
        }
    }

    /// Something a restless user does.
    async fn act(&mut self, url: &str) {
        match self.rng.next() % 100 {
            0..=39 => {
                if let Some(id) = self.current.take() {
                    self.leaving = Some(id);
                    self.send(ClientMsg::Next).await;
                }
            }
            40..=45 => {
                self.leaving = self.current.take().or(self.leaving);
                self.send(ClientMsg::Stop).await;
                self.join().await;
            }
            46..=48 if self.resumes < MAX_RESUMES => {
                // Network blip: drop the socket and resume the same session.
                self.resumes += 1;
                let (ws, session, token) = Self::connect(url, Some(&self.token)).await;
                let old = std::mem::replace(&mut self.ws, ws);
                drop(old);
                assert_eq!(session, self.session, "resumed within the grace period");
                self.token = token;
                self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                // A resumed session is told its state again (queued or matched).
            }
            49..=50 => {
                // Tab closed, new visitor.
                let _ = self.ws.close(None).await;
                let (ws, session, token) = Self::connect(url, None).await;
                self.ws = ws;
                self.session = session;
                self.token = token;
                self.resumes = 0;
                self.current = None;
                self.leaving = None;
                self.join().await;
            }
            _ => {}
        }
    }
}

async fn simulate(seed: u64, url: String, deadline: tokio::time::Instant, registry: Registry, counters: Arc<Counters>) {
    let (ws, session, token) = Sim::connect(&url, None).await;
    let mut sim = Sim {
        rng: Lcg(seed * 7919 + 1),
        ws,
        session,
        token,
        current: None,
        leaving: None,
        resumes: 0,
        registry,
        counters,
    };
    sim.join().await;
    let mut next_act = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        if tokio::time::Instant::now() >= next_act {
            // A restless user acts every 20-200 ms.
            sim.act(&url).await;
            next_act = tokio::time::Instant::now() + Duration::from_millis(20 + sim.rng.next() % 180);
        }
        match tokio::time::timeout_at(next_act.min(deadline), sim.ws.next()).await {
            Err(_) => {}
            Ok(Some(Ok(Message::Text(t)))) => {
                let msg = ServerMsg::from_json(t.as_str()).expect("valid server message");
                sim.on(msg).await;
            }
            Ok(Some(Ok(Message::Close(frame)))) => panic!("server closed a well-behaved client: {frame:?}"),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => panic!("socket error: {e}"),
            Ok(None) => panic!("socket ended"),
        }
    }
    let _ = sim.ws.close(None).await;
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(2), sim.ws.next()).await {}
}

/// A tiny deterministic generator per client.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}
