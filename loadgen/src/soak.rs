//! `soak`: a long churn with hostile clients mixed in, watching that the server's
//! memory stays flat and that everything it holds is gone once everyone has left.
//!
//! Churn users (the `churn` scenario's, from 127.5.x.y) run alongside hostile agents
//! (from 127.6.x.y), each of which loops through these episodes:
//! - `flood`: messages as fast as possible until the server closes the socket;
//! - `rejoin`: `stop` + `join` with a fresh interest at 20/s for 5 s, then a drop
//!   without a close frame (its resume token goes to a pool of "stolen" tokens);
//! - `oversized`: one frame larger than the server's limit;
//! - `garbage`: malformed JSON, unknown types, wrong field types, a binary frame;
//! - `never-read`: a socket with a tiny receive buffer, matched with a second
//!   socket that sends it 30 KB signals, 40 a second, which it never reads;
//! - `resume-garbage`: `?resume=` with unknown or malformed tokens;
//! - `resume-stolen`: `?resume=` with a token another agent's dropped session left,
//!   from a different address.
//!
//! Every `--sample-secs` it samples the server's RSS and `/healthz`. At the end, once
//! every client has closed and the server's grace period has passed, `/healthz` must
//! show no connections, sessions, waiting users or matches.

use crate::bystander::fmt_counts;
use crate::client::{Client, Lcg, connect_failure_class, loopback_source, tcp_connect_with, ws_failure};
use crate::http;
use crate::proc::Process;
use crate::scenarios::{self, Report};
use futures_util::{SinkExt, StreamExt};
use protocol::{ClientMsg, Mode, Preferences, ServerMsg, SignalPayload};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

/// Options of `soak`.
#[derive(Debug, Clone)]
pub struct Soak {
    pub seconds: u64,
    pub users: usize,
    pub think_ms: u64,
    pub max_interests: usize,
    pub user_sources: usize,
    pub hostile: usize,
    pub hostile_sources: usize,
    pub grace_secs: u64,
    pub sample_secs: u64,
    pub metrics_url: Option<http::HttpTarget>,
    pub oversize_bytes: usize,
}

/// The hostile episodes, in the order each agent cycles through them.
const EPISODES: [&str; 7] =
    ["flood", "rejoin", "oversized", "garbage", "never-read", "resume-garbage", "resume-stolen"];

/// Longest any one episode runs.
const EPISODE_LIMIT: Duration = Duration::from_secs(30);

/// Slack after the grace period before the final check.
const SETTLE: Duration = Duration::from_secs(2);

/// One sample of the server.
#[derive(Debug, Clone)]
struct Sample {
    at: f64,
    rss: Option<u64>,
    healthz: Result<Value, String>,
}

/// What the hostile agents saw.
#[derive(Default)]
struct Hostile {
    /// "<episode>: <outcome>" → count.
    outcomes: Mutex<BTreeMap<String, u64>>,
    /// "<episode> <code>" → count of `error` replies.
    errors: Mutex<BTreeMap<String, u64>>,
    /// Resume tokens of sessions dropped by `rejoin` episodes.
    stolen: Mutex<Vec<String>>,
}

impl Hostile {
    fn outcome(&self, episode: &str, what: impl std::fmt::Display) {
        let key = format!("{episode}: {what}");
        *self.outcomes.lock().expect("no panics while locked").entry(key).or_default() += 1;
    }

    fn error(&self, episode: &str, code: &str) {
        let key = format!("{episode} {code}");
        *self.errors.lock().expect("no panics while locked").entry(key).or_default() += 1;
    }
}

fn close_code(frame: Option<&tokio_tungstenite::tungstenite::protocol::CloseFrame>) -> String {
    match frame {
        Some(f) => format!("closed {}", u16::from(f.code)),
        None => "closed without code".into(),
    }
}

/// Reads until the server closes the socket (or `limit` passes): how it ended.
async fn read_until_closed(c: &mut Client, episode: &str, hostile: &Hostile, limit: Duration) -> String {
    timeout(limit, read_to_close(&mut c.ws, episode, hostile))
        .await
        .unwrap_or_else(|_| format!("still open after {limit:?}"))
}

/// Reads `stream` to its end, counting `error` replies: how it ended.
async fn read_to_close<S>(stream: &mut S, episode: &str, hostile: &Hostile) -> String
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match stream.next().await {
            Some(Ok(Message::Text(t))) => {
                if let Ok(ServerMsg::Error { code, .. }) = ServerMsg::from_json(t.as_str()) {
                    hostile.error(episode, code.as_str());
                }
            }
            Some(Ok(Message::Close(frame))) => return close_code(frame.as_ref()),
            Some(Ok(_)) => {}
            Some(Err(e)) => return ws_failure(&e),
            None => return "socket ended".into(),
        }
    }
}

/// Waits for `matched`.
async fn matched(c: &mut Client) -> anyhow::Result<protocol::MatchId> {
    loop {
        if let ServerMsg::Matched { match_id, .. } = c.recv().await? {
            return Ok(match_id);
        }
    }
}

/// Malformed messages of every kind the server must refuse (and survive).
fn garbage(rng: &mut Lcg) -> Vec<Message> {
    let nested = format!("{}{}", "[".repeat(300), "]".repeat(300));
    let mut texts = vec![
        "not json".to_string(),
        "{}".into(),
        r#"{"type":"warp"}"#.into(),
        r#"{"type":"join","mode":7}"#.into(),
        r#"{"type":"join","mode":"video","interests":["a","b","c","d","e","f","g","h","i","j","k"],"country":null,"same_country":false}"#.into(),
        r#"{"type":"join","mode":"text","interests":[],"country":"ZZZ","same_country":true}"#.into(),
        r#"{"type":"chat","match_id":"not-a-uuid","text":"x"}"#.into(),
        format!(r#"{{"type":"signal","match_id":"{}","payload":{{"kind":"offer"}}}}"#, rng.uuid()),
        format!(r#"{{"type":"chat","match_id":"{}","text":{}}}"#, rng.uuid(), "1".repeat(40)),
        nested,
        "\u{0}\u{1}\u{7f}".into(),
    ];
    texts.push(format!(r#"{{"type":"report","match_id":"{}","reason":"boredom"}}"#, rng.uuid()));
    let mut out: Vec<Message> = texts.into_iter().map(Message::text).collect();
    out.push(Message::binary(vec![0xff, 0x00, 0x7b]));
    out
}

/// One episode; returns its outcome.
async fn episode(
    name: &'static str,
    url: &str,
    target: SocketAddr,
    source: IpAddr,
    rng: &mut Lcg,
    hostile: &Hostile,
    oversize_bytes: usize,
) -> String {
    let connect = |resume: Option<String>| async move {
        timeout(Duration::from_secs(10), Client::connect_resuming(url, target, Some(source), resume.as_deref()))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| format!("connect failed: {}", connect_failure_class(&e)))
    };
    match name {
        "flood" => {
            let c = match connect(None).await {
                Ok(c) => c,
                Err(e) => return e,
            };
            let match_id = rng.uuid();
            let (mut sink, mut stream) = c.ws.split();
            let reader = read_to_close(&mut stream, name, hostile);
            let writer = async {
                let chat = format!(r#"{{"type":"chat","match_id":"{match_id}","text":"spam"}}"#);
                let typing = format!(r#"{{"type":"typing","match_id":"{match_id}","typing":true}}"#);
                let started = Instant::now();
                while started.elapsed() < Duration::from_secs(15) {
                    for i in 0..50 {
                        let m = if i % 2 == 0 { &chat } else { &typing };
                        if sink.feed(Message::text(m.as_str())).await.is_err() {
                            return;
                        }
                    }
                    if sink.flush().await.is_err() {
                        return;
                    }
                    tokio::task::yield_now().await;
                }
            };
            tokio::pin!(reader);
            tokio::select! {
                how = &mut reader => how,
                _ = writer => timeout(Duration::from_secs(5), reader).await.unwrap_or_else(|_| "not closed".into()),
            }
        }
        "rejoin" => {
            let mut c = match connect(None).await {
                Ok(c) => c,
                Err(e) => return e,
            };
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            let until = tokio::time::Instant::now() + Duration::from_secs(5);
            let mut round = 0u64;
            let tag = rng.next();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    _ = tick.tick() => {
                        let join = Preferences {
                            interests: vec![format!("h{tag}n{round}")],
                            ..Preferences::new(Mode::Text)
                        };
                        let sent = async {
                            c.ws.feed(Message::text(ClientMsg::Stop.to_json())).await?;
                            c.ws.send(Message::text(ClientMsg::Join(join).to_json())).await
                        };
                        if sent.await.is_err() {
                            return "send failed".into();
                        }
                        round += 1;
                    }
                    msg = c.ws.next() => match msg {
                        Some(Ok(Message::Text(t))) => {
                            if let Ok(ServerMsg::Error { code, .. }) = ServerMsg::from_json(t.as_str()) {
                                hostile.error(name, code.as_str());
                            }
                        }
                        Some(Ok(Message::Close(frame))) => return close_code(frame.as_ref()),
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return ws_failure(&e),
                        None => return "socket ended".into(),
                    },
                }
            }
            {
                let mut pool = hostile.stolen.lock().expect("no panics while locked");
                if pool.len() < 1000 {
                    pool.push(c.resume_token.clone());
                }
            }
            // Gone without a close frame: the session waits out its grace period.
            drop(c);
            "dropped while queued".into()
        }
        "oversized" => {
            let mut c = match connect(None).await {
                Ok(c) => c,
                Err(e) => return e,
            };
            let text = "x".repeat(oversize_bytes);
            let frame = format!(r#"{{"type":"chat","match_id":"{}","text":"{text}"}}"#, rng.uuid());
            if c.ws.send(Message::text(frame)).await.is_err() {
                return "send failed".into();
            }
            read_until_closed(&mut c, name, hostile, Duration::from_secs(5)).await
        }
        "garbage" => {
            let mut c = match connect(None).await {
                Ok(c) => c,
                Err(e) => return e,
            };
            let messages = garbage(rng);
            let n = messages.len();
            for m in messages {
                if c.ws.send(m).await.is_err() {
                    return "send failed".into();
                }
            }
            let mut answered = 0;
            let reading = async {
                while answered < n {
                    match c.ws.next().await {
                        Some(Ok(Message::Text(t))) => {
                            if let Ok(ServerMsg::Error { code, .. }) = ServerMsg::from_json(t.as_str()) {
                                hostile.error(name, code.as_str());
                                answered += 1;
                            }
                        }
                        Some(Ok(Message::Close(frame))) => return Some(close_code(frame.as_ref())),
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Some(ws_failure(&e)),
                        None => return Some("socket ended".into()),
                    }
                }
                None
            };
            let ended = timeout(Duration::from_secs(3), reading).await;
            let _ = timeout(Duration::from_secs(1), c.ws.close(None)).await;
            match ended {
                Ok(Some(how)) => how,
                Ok(None) => format!("all {n} refused with an error, connection kept"),
                Err(_) => "some not answered in 3 s".into(),
            }
        }
        "never-read" => {
            // A sleeper (tiny receive buffer) and a talker are matched through an
            // interest nobody else has; the sleeper reads up to `matched` and then never
            // again while the talker sends it 30 KB offers, 40 a second (within the rate
            // limit). The talker hears when the server gives up on the sleeper.
            let tag = format!("nr{}", rng.next());
            let join = || ClientMsg::Join(Preferences { interests: vec![tag.clone()], ..Preferences::new(Mode::Text) });
            let stream = match tcp_connect_with(target, Some(source), Some(4096)).await {
                Ok(s) => s,
                Err(e) => return format!("connect failed: {}", connect_failure_class(&e)),
            };
            let mut sleeper = match timeout(Duration::from_secs(10), Client::handshake(url, stream)).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return format!("connect failed: {}", connect_failure_class(&e)),
                Err(_) => return "connect timed out".into(),
            };
            let mut talker = match connect(None).await {
                Ok(c) => c,
                Err(e) => return e,
            };
            let paired = async {
                sleeper.send(&join()).await?;
                talker.send(&join()).await?;
                let (a, b) = tokio::join!(matched(&mut sleeper), matched(&mut talker));
                anyhow::Ok((a?, b?))
            };
            let match_id = match timeout(Duration::from_secs(10), paired).await {
                Ok(Ok((a, b))) if a == b => a,
                Ok(Ok(_)) => return "matched with someone else".into(),
                Ok(Err(e)) => return format!("pairing failed: {e:#}"),
                Err(_) => return "not matched in 10 s".into(),
            };
            let _ = talker.send(&ClientMsg::Ready { match_id }).await;
            // The sleeper says `ready` (sending is not reading), so signals reach it.
            let _ = sleeper.send(&ClientMsg::Ready { match_id }).await;
            let offer = SignalPayload::Offer { sdp: "v=0 ".repeat(7_500) };
            let line = ClientMsg::Signal { match_id, payload: offer, generation: None }.to_json();
            let started = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(25));
            let dropped = loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if started.elapsed() >= Duration::from_secs(15) {
                            break None;
                        }
                        match timeout(Duration::from_secs(2), talker.ws.send(Message::text(line.as_str()))).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => return format!("the talker could not send: {}", ws_failure(&e)),
                            Err(_) => {
                                let after = started.elapsed().as_secs() / 2 * 2;
                                return format!("the talker's send blocked for 2 s after {after}-{} s", after + 2);
                            }
                        }
                    }
                    msg = talker.ws.next() => match msg {
                        Some(Ok(Message::Text(t))) => match ServerMsg::from_json(t.as_str()) {
                            Ok(ServerMsg::PeerReconnecting { .. } | ServerMsg::PeerLeft { .. }) => {
                                break Some(started.elapsed().as_secs_f64());
                            }
                            Ok(ServerMsg::Error { code, .. }) => hostile.error(name, code.as_str()),
                            _ => {}
                        },
                        Some(Ok(Message::Close(frame))) => return format!("talker {}", close_code(frame.as_ref())),
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return format!("talker {}", ws_failure(&e)),
                        None => return "talker socket ended".into(),
                    },
                }
            };
            let _ = timeout(Duration::from_secs(1), talker.ws.close(None)).await;
            // Only now look at what reached the sleeper: was there a close frame?
            let code = read_until_closed(&mut sleeper, name, hostile, Duration::from_secs(2)).await;
            match dropped {
                // Whole seconds, in steps of 2, so outcomes can be counted.
                Some(after) => format!(
                    "dropped by the server after {}-{} s ({code})",
                    (after as u64) / 2 * 2,
                    (after as u64) / 2 * 2 + 2
                ),
                None => "still served after 15 s of not reading".into(),
            }
        }
        "resume-garbage" => {
            let token = match rng.next() % 3 {
                0 => rng.uuid(),
                1 => "not-a-token".into(),
                _ => "a".repeat(2000),
            };
            let mut c = match connect(Some(token)).await {
                Ok(c) => c,
                Err(e) => return e,
            };
            let _ = timeout(Duration::from_secs(1), c.ws.close(None)).await;
            if c.resumed { "RESUMED a session (a bug)".into() } else { "new session".into() }
        }
        "resume-stolen" => {
            let token = {
                let mut pool = hostile.stolen.lock().expect("no panics while locked");
                if pool.is_empty() {
                    None
                } else {
                    let i = rng.next() as usize % pool.len();
                    Some(pool.swap_remove(i))
                }
            };
            let Some(token) = token else { return "no token stolen yet".into() };
            let mut c = match connect(Some(token)).await {
                Ok(c) => c,
                Err(e) => return e,
            };
            let how = if c.resumed { "resumed another address's session" } else { "new session (token expired)" };
            let _ = c.send(&ClientMsg::Stop).await;
            let _ = timeout(Duration::from_secs(1), c.ws.close(None)).await;
            how.into()
        }
        other => format!("unknown episode {other}"),
    }
}

/// One hostile agent: episodes one after another until `deadline`.
async fn hostile_agent(
    index: usize,
    url: String,
    target: SocketAddr,
    source: IpAddr,
    deadline: tokio::time::Instant,
    hostile: Arc<Hostile>,
    oversize_bytes: usize,
) {
    let mut rng = Lcg((index as u64).wrapping_mul(7919) + 3);
    let mut k = index;
    // Start spread over two seconds.
    tokio::time::sleep(Duration::from_millis(rng.next() % 2000)).await;
    while tokio::time::Instant::now() < deadline {
        let name = EPISODES[k % EPISODES.len()];
        k += 1;
        let limit = deadline.min(tokio::time::Instant::now() + EPISODE_LIMIT);
        let run = episode(name, &url, target, source, &mut rng, &hostile, oversize_bytes);
        match tokio::time::timeout_at(limit, run).await {
            Ok(outcome) => hostile.outcome(name, outcome),
            Err(_) => hostile.outcome(name, "cut short by the end of the run"),
        }
        tokio::time::sleep(Duration::from_millis(200 + rng.next() % 500)).await;
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}

fn healthz_line(h: &Value) -> String {
    ["connections", "sessions", "waiting", "in_match"]
        .iter()
        .map(|k| format!("{k} {}", h.get(k).map_or("?".to_string(), |v| v.to_string())))
        .collect::<Vec<_>>()
        .join(" · ")
}

async fn sample(target: SocketAddr, server: Option<Process>, started: Instant) -> Sample {
    Sample {
        at: started.elapsed().as_secs_f64(),
        rss: server.and_then(|p| p.rss_bytes().ok()),
        healthz: http::healthz(target, None).await.map_err(|e| format!("{e:#}")),
    }
}

fn print_sample(s: &Sample) {
    let rss = s.rss.map_or("?".into(), mib);
    let h = match &s.healthz {
        Ok(h) => healthz_line(h),
        Err(e) => format!("healthz failed: {e}"),
    };
    eprintln!("[soak {:>5.0} s] RSS {rss} · {h}", s.at);
}

/// What in `/healthz` must be zero once everyone has left.
fn leftovers(h: &Value) -> Vec<String> {
    ["sessions", "waiting", "in_match", "connections"]
        .iter()
        .filter_map(|k| match h.get(k).and_then(Value::as_u64) {
            Some(0) => None,
            Some(n) => Some(format!("{k} {n}")),
            None => Some(format!("{k} missing")),
        })
        .collect()
}

/// `soak`: churn plus hostile agents for `seconds`, then a check that nothing is left.
pub async fn soak(url: &str, target: SocketAddr, options: Soak, server: Option<Process>) -> anyhow::Result<Report> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(options.seconds);
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let samples = samples.clone();
        let every = Duration::from_secs(options.sample_secs.max(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let s = sample(target, server, started).await;
                print_sample(&s);
                samples.lock().expect("no panics while locked").push(s);
            }
        })
    };
    let hostile = Arc::new(Hostile::default());
    let agents: Vec<_> = (0..options.hostile)
        .map(|i| {
            let source = loopback_source(6, i % options.hostile_sources);
            tokio::spawn(hostile_agent(
                i,
                url.to_string(),
                target,
                source,
                deadline.into(),
                hostile.clone(),
                options.oversize_bytes,
            ))
        })
        .collect();
    let churn = scenarios::churn(
        &[crate::transport::Connector::new(crate::transport::Transport::Ws, url, target)],
        scenarios::Churn {
            users: options.users,
            seconds: options.seconds,
            think_ms: options.think_ms,
            max_interests: options.max_interests,
            plot: None,
            sources: (0..options.user_sources).map(|i| loopback_source(5, i)).collect(),
            transport: crate::transport::Transport::Ws,
        },
        server,
    )
    .await;
    for a in agents {
        let _ = a.await;
    }
    let active = started.elapsed();
    let wait = Duration::from_secs(options.grace_secs) + SETTLE;
    eprintln!(
        "[soak {:>5.0} s] every client has closed; waiting {} s (grace period + {} s) before the final check",
        active.as_secs_f64(),
        wait.as_secs(),
        SETTLE.as_secs()
    );
    tokio::time::sleep(wait).await;
    sampler.abort();
    let last = sample(target, server, started).await;
    print_sample(&last);
    samples.lock().expect("no panics while locked").push(last.clone());

    let mut report = Report::new("soak");
    report.add(
        "setup",
        "load",
        json!({ "seconds": options.seconds, "users": options.users, "think_ms": options.think_ms,
            "hostile": options.hostile, "hostile_sources": options.hostile_sources, "user_sources": options.user_sources }),
        format!(
            "{} s: {} churn users ({} addresses, think {} ms) + {} hostile agents ({} addresses)",
            options.seconds,
            options.users,
            options.user_sources,
            options.think_ms,
            options.hostile,
            options.hostile_sources
        ),
    );
    match churn {
        Ok(r) => report.absorb("churn", "churn: ", r),
        Err(e) => report.fail(format!("the churn users could not run: {e:#}")),
    }
    let outcomes = std::mem::take(&mut *hostile.outcomes.lock().expect("no panics while locked"));
    for name in EPISODES {
        let of: BTreeMap<String, u64> = outcomes
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(&format!("{name}: ")).map(|o| (o.to_string(), *v)))
            .collect();
        report.row(&format!("hostile {name}"), fmt_counts(&of));
        if name == "resume-garbage" && of.keys().any(|k| k.contains("RESUMED")) {
            report.fail("a garbage resume token resumed a session".into());
        }
    }
    let errors = std::mem::take(&mut *hostile.errors.lock().expect("no panics while locked"));
    report.add("hostile_outcomes", "hostile error replies", json!(errors), fmt_counts(&errors));
    report.json_insert("hostile_episodes", json!(outcomes));

    match &last.healthz {
        Ok(h) => {
            let left = leftovers(h);
            report.add(
                "final_healthz",
                &format!("/healthz {} s after the last client", wait.as_secs()),
                h.clone(),
                healthz_line(h),
            );
            if !left.is_empty() {
                report.fail(format!("the server still holds {} after everyone left", left.join(", ")));
            }
        }
        Err(e) => report.fail(format!("the final /healthz failed: {e}")),
    }
    if let Some(m) = &options.metrics_url {
        match http::get(m.addr, &m.host, &m.path, None, Duration::from_secs(10)).await {
            Ok(f) if f.status == 200 => {
                let text = String::from_utf8_lossy(&f.body);
                let gauges = http::matching_gauges(&text, &["table", "sessions", "waiting", "connections"]);
                if gauges.is_empty() {
                    report.row("metrics", "no matching gauges".into());
                }
                for line in &gauges {
                    report.row("metrics", line.clone());
                }
                report.json_insert("metrics_gauges", json!(gauges));
            }
            Ok(f) => report.row("metrics", format!("{} answered {}", m.path, f.status)),
            Err(e) => report.row("metrics", format!("cannot fetch {}: {e:#}", m.path)),
        }
    }
    let samples = std::mem::take(&mut *samples.lock().expect("no panics while locked"));
    let rss: Vec<(f64, u64)> = samples.iter().filter_map(|s| s.rss.map(|r| (s.at, r))).collect();
    if let (Some(first), Some(last)) = (rss.first(), rss.last()) {
        let min = rss.iter().map(|r| r.1).min().unwrap_or_default();
        let max = rss.iter().map(|r| r.1).max().unwrap_or_default();
        report.add(
            "rss",
            "server RSS samples",
            json!({ "first": first.1, "min": min, "max": max, "last": last.1,
                "samples": rss.iter().map(|(at, r)| json!([at, r])).collect::<Vec<_>>() }),
            format!(
                "first {} (at {:.0} s), min {}, max {}, last {} (at {:.0} s); {} samples",
                mib(first.1),
                first.0,
                mib(min),
                mib(max),
                mib(last.1),
                last.0,
                rss.len()
            ),
        );
    }
    let failed_samples = samples.iter().filter(|s| s.healthz.is_err()).count();
    report.add(
        "healthz_samples",
        "/healthz samples",
        json!({ "count": samples.len(), "failed": failed_samples }),
        format!("{} ({failed_samples} failed)", samples.len()),
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    #[test]
    fn leftovers_name_what_is_not_zero() {
        let clean = json!({ "status": "ok", "connections": 0, "sessions": 0, "waiting": 0, "in_match": 0 });
        assert!(leftovers(&clean).is_empty());
        let dirty = json!({ "status": "ok", "connections": 0, "sessions": 3, "waiting": 1 });
        assert_eq!(leftovers(&dirty), vec!["sessions 3", "waiting 1", "in_match missing"]);
    }

    #[test]
    fn garbage_is_text_and_binary() {
        let g = garbage(&mut Lcg(1));
        assert!(g.iter().any(|m| matches!(m, Message::Binary(_))));
        assert!(g.iter().filter(|m| matches!(m, Message::Text(_))).count() >= 10);
    }

    #[test]
    fn close_codes_are_named() {
        assert_eq!(close_code(None), "closed without code");
        let f = tokio_tungstenite::tungstenite::protocol::CloseFrame { code: CloseCode::Policy, reason: "x".into() };
        assert_eq!(close_code(Some(&f)), "closed 1008");
    }
}
