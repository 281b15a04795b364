//! Attack scenarios, each measured by a bystander video pair chatting meanwhile
//! (see [`crate::bystander`]): `bystander` alone (the baseline), `rejoin-flood`,
//! `healthz-flood` and `slowloris`.
//!
//! Every attack runs for `--seconds` from the moment its sockets are set up; the
//! bystander starts shortly after the attack (so it connects and is matched under
//! attack too) and chats until the end. Source addresses: the bystander 127.0.0.2 by
//! default, rejoin attackers 127.1.x.y, the healthz flood 127.2.0.1, slowloris
//! 127.3.0.1 and the new user loading the page 127.4.0.1.

use crate::bystander::{self, Outcome, fmt_counts, fmt_ms};
use crate::client::{Client, connect_failure_class, loopback_source, tcp_connect};
use crate::http;
use crate::proc::Process;
use crate::scenarios::Report;
use futures_util::{SinkExt, StreamExt};
use protocol::{ClientMsg, Mode, Preferences, ServerMsg};
use serde_json::json;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// Connections opened at once while setting an attack up.
const WAVE: usize = 256;

/// What every attack scenario shares.
#[derive(Debug, Clone, Copy)]
pub struct Common {
    pub seconds: u64,
    pub bystander: bystander::Settings,
}

/// The server's CPU and memory over an attack.
struct Usage {
    server: Option<Process>,
    cpu: Option<f64>,
    rss: Option<u64>,
}

impl Usage {
    fn start(server: Option<Process>) -> Self {
        Self { server, cpu: server.and_then(|p| p.cpu_seconds().ok()), rss: server.and_then(|p| p.rss_bytes().ok()) }
    }

    fn add_to(&self, report: &mut Report, elapsed: Duration) {
        let Some(p) = self.server else { return };
        if let (Some(before), Ok(after)) = (self.cpu, p.cpu_seconds()) {
            let cpu = after - before;
            let share = cpu / elapsed.as_secs_f64() * 100.0;
            report.add(
                "server_cpu_seconds",
                "server CPU during the run",
                json!(cpu),
                format!("{cpu:.2} s ({share:.0} % of one core)"),
            );
        }
        if let (Some(before), Ok(after)) = (self.rss, p.rss_bytes()) {
            report.add(
                "server_rss_bytes",
                "server RSS before → after",
                json!({ "before": before, "after": after }),
                format!("{:.1} → {:.1} MiB", before as f64 / 1048576.0, after as f64 / 1048576.0),
            );
        }
    }
}

/// When the bystander starts after the attack does.
fn bystander_delay(seconds: u64) -> Duration {
    Duration::from_millis((seconds * 1000 / 4).min(1000))
}

fn bump(map: &Mutex<BTreeMap<String, u64>>, key: String) {
    *map.lock().expect("no panics while locked").entry(key).or_default() += 1;
}

fn take(map: &Mutex<BTreeMap<String, u64>>) -> BTreeMap<String, u64> {
    std::mem::take(&mut *map.lock().expect("no panics while locked"))
}

/// Finishes a report: the bystander's rows, the server's usage and the README row.
fn finish(
    report: &mut Report,
    (label, max_p99_ms): (String, Option<f64>),
    out: &Outcome,
    usage: &Usage,
    elapsed: Duration,
    attack: String,
) {
    if let Some(max) = max_p99_ms {
        match out.percentiles() {
            Some((_, p99, _)) if p99 <= max => {}
            Some((_, p99, _)) => report.fail(format!("the bystander's relay p99 was {p99:.2} ms, over {max} ms")),
            None => report.fail("the bystander measured nothing".into()),
        }
    }
    bystander::add_to(report, out);
    usage.add_to(report, elapsed);
    report.readme_row(bystander::HEADER.into(), format!("| {label} | {} | {attack} |", bystander::cells(out)));
}

/// `bystander`: the pair alone, as the baseline for the attacks.
pub async fn baseline(
    url: &str,
    target: SocketAddr,
    common: Common,
    server: Option<Process>,
) -> anyhow::Result<Report> {
    let usage = Usage::start(server);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(common.seconds);
    let handle = bystander::spawn(url.into(), target, common.bystander, Duration::ZERO, deadline);
    let out = bystander::finish(handle).await;
    let mut report = Report::new("bystander");
    report.add("seconds", "duration", json!(common.seconds), format!("{} s", common.seconds));
    let label = (format!("no attack, {} s", common.seconds), common.bystander.max_p99_ms);
    finish(&mut report, label, &out, &usage, started.elapsed(), "–".into());
    Ok(report)
}

/// Options of `rejoin-flood`.
#[derive(Debug, Clone, Copy)]
pub struct RejoinFlood {
    pub attackers: usize,
    pub addresses: usize,
    pub joins_per_sec: u32,
}

/// Counters shared by the rejoin attackers.
#[derive(Default)]
struct FloodStats {
    joins: AtomicU64,
    messages_in: AtomicU64,
    matched: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    ended: Mutex<BTreeMap<String, u64>>,
}

/// Opens `n` WebSocket clients, `WAVE` at a time, from `source(i)`; failures are
/// counted by class.
async fn connect_many(
    url: &str,
    target: SocketAddr,
    n: usize,
    source: impl Fn(usize) -> IpAddr,
) -> (Vec<(usize, Client)>, BTreeMap<String, u64>) {
    let mut clients = Vec::with_capacity(n);
    let mut failures = BTreeMap::new();
    for wave in (0..n).collect::<Vec<_>>().chunks(WAVE) {
        let tasks: Vec<_> = wave
            .iter()
            .map(|&i| {
                let url = url.to_string();
                let ip = source(i);
                tokio::spawn(async move {
                    let c =
                        tokio::time::timeout(Duration::from_secs(10), Client::connect(&url, target, Some(ip))).await;
                    (i, c)
                })
            })
            .collect();
        for t in tasks {
            match t.await {
                Ok((i, Ok(Ok(c)))) => clients.push((i, c)),
                Ok((_, Ok(Err(e)))) => *failures.entry(connect_failure_class(&e)).or_default() += 1,
                Ok((_, Err(_))) => *failures.entry("timeout".to_string()).or_default() += 1,
                Err(_) => *failures.entry("panic".to_string()).or_default() += 1,
            }
        }
    }
    (clients, failures)
}

/// One rejoin attacker: `stop` + `join` (text, one unique interest) at `rate`,
/// reading and discarding everything the server sends.
async fn rejoin_attacker(
    mut c: Client,
    index: usize,
    period: Duration,
    first: tokio::time::Instant,
    deadline: tokio::time::Instant,
    stats: Arc<FloodStats>,
) {
    let mut tick = tokio::time::interval_at(first, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut round: u64 = 0;
    let ended = loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break None,
            _ = tick.tick() => {
                let join = Preferences {
                    interests: vec![format!("r{index}n{round}")],
                    ..Preferences::new(Mode::Text)
                };
                let sent = async {
                    c.ws.feed(Message::text(ClientMsg::Stop.to_json())).await?;
                    c.ws.send(Message::text(ClientMsg::Join(join).to_json())).await
                };
                if let Err(e) = sent.await {
                    break Some(format!("send failed: {e}"));
                }
                round += 1;
                stats.joins.fetch_add(1, Ordering::Relaxed);
            }
            msg = c.ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    stats.messages_in.fetch_add(1, Ordering::Relaxed);
                    match ServerMsg::from_json(t.as_str()) {
                        Ok(ServerMsg::Error { code, .. }) => bump(&stats.errors, code.as_str().to_string()),
                        Ok(ServerMsg::Matched { .. }) => {
                            stats.matched.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(ServerMsg::Banned { .. }) => bump(&stats.errors, "banned".into()),
                        _ => {}
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    break Some(match frame {
                        Some(f) => format!("closed {}", u16::from(f.code)),
                        None => "closed".into(),
                    })
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => break Some(format!("socket error: {e}")),
                None => break Some("socket ended".into()),
            },
        }
    };
    match ended {
        Some(why) => bump(&stats.ended, why),
        None => {
            let _ = tokio::time::timeout(Duration::from_secs(1), c.ws.close(None)).await;
        }
    }
}

/// `rejoin-flood`: attackers loop `stop` + `join` with a fresh interest each time.
pub async fn rejoin_flood(
    url: &str,
    target: SocketAddr,
    options: RejoinFlood,
    common: Common,
    server: Option<Process>,
) -> anyhow::Result<Report> {
    let RejoinFlood { attackers, addresses, joins_per_sec } = options;
    let setup = Instant::now();
    let (clients, refused) = connect_many(url, target, attackers, |i| loopback_source(1, i % addresses)).await;
    let setup = setup.elapsed();
    let connected = clients.len();
    let usage = Usage::start(server);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(common.seconds);
    let stats = Arc::new(FloodStats::default());
    let period = Duration::from_secs_f64(1.0 / f64::from(joins_per_sec));
    let now = tokio::time::Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|(i, c)| {
            // Spread the attackers' rounds evenly over one period.
            let first = now + period.mul_f64(i as f64 / attackers as f64);
            let stats = stats.clone();
            tokio::spawn(rejoin_attacker(c, i, period, first, deadline.into(), stats))
        })
        .collect();
    let handle = bystander::spawn(url.into(), target, common.bystander, bystander_delay(common.seconds), deadline);
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().min(Duration::from_secs(common.seconds));
    let out = bystander::finish(handle).await;

    let mut report = Report::new("rejoin-flood");
    report.add(
        "attackers",
        "attackers connected / asked",
        json!({ "connected": connected, "asked": attackers, "addresses": addresses }),
        format!("{connected} / {attackers} from {addresses} addresses (set up in {:.1} s)", setup.as_secs_f64()),
    );
    report.add("refused", "attacker connections refused", json!(refused), fmt_counts(&refused));
    report.add("seconds", "attack duration", json!(common.seconds), format!("{} s", common.seconds));
    let joins = stats.joins.load(Ordering::Relaxed);
    let rate = joins as f64 / elapsed.as_secs_f64();
    report.add(
        "joins",
        "stop + join rounds sent",
        json!({ "count": joins, "per_sec": rate }),
        format!("{joins} ({rate:.0}/s, asked {}/s)", connected as u64 * u64::from(joins_per_sec)),
    );
    let received = stats.messages_in.load(Ordering::Relaxed);
    report.add("messages_in", "server messages to attackers", json!(received), received.to_string());
    let matched = stats.matched.load(Ordering::Relaxed);
    report.add("matched", "attackers matched", json!(matched), matched.to_string());
    let errors = take(&stats.errors);
    report.add("errors", "error replies to attackers", json!(errors), fmt_counts(&errors));
    let ended = take(&stats.ended);
    let survived = connected as u64 - ended.values().sum::<u64>();
    report.add(
        "attackers_ended",
        "attackers ended early",
        json!(ended),
        format!("{} (still open at the end: {survived})", fmt_counts(&ended)),
    );
    let label = format!(
        "rejoin-flood: {attackers} sockets, {addresses} addresses, {joins_per_sec} joins/s each, {} s",
        common.seconds
    );
    let attack = format!(
        "{rate:.0} joins/s sent; errors: {}; attackers closed: {}",
        fmt_counts(&errors),
        if ended.is_empty() { "none".into() } else { fmt_counts(&ended) }
    );
    finish(&mut report, (label, common.bystander.max_p99_ms), &out, &usage, elapsed, attack);
    // Of every attacker asked for: sockets that could not connect weaken the attack too.
    let asked = attackers as f64 * f64::from(joins_per_sec);
    if common.bystander.max_p99_ms.is_some() && rate < asked * MIN_ATTACK_SHARE {
        // A gentler attack than asked would flatter the server.
        report.fail(format!(
            "the attack reached {rate:.0} joins/s, under {:.0} % of the {asked:.0}/s asked",
            MIN_ATTACK_SHARE * 100.0
        ));
    }
    Ok(report)
}

/// The share of the asked rate an attack must reach for its gate to count.
const MIN_ATTACK_SHARE: f64 = 0.75;

/// Options of `healthz-flood`.
#[derive(Debug, Clone, Copy)]
pub struct HealthzFlood {
    pub connections: usize,
    /// Requests in flight per connection.
    pub pipeline: usize,
}

#[derive(Default)]
struct HealthzStats {
    answered: AtomicU64,
    by_status: Mutex<BTreeMap<String, u64>>,
    ended: Mutex<BTreeMap<String, u64>>,
}

/// One keep-alive connection with `window` pipelined `GET /healthz` in flight.
async fn healthz_connection(
    target: SocketAddr,
    source: IpAddr,
    window: usize,
    deadline: tokio::time::Instant,
    stats: Arc<HealthzStats>,
) {
    let ended = async {
        let mut stream = tcp_connect(target, Some(source)).await?;
        let request = format!("GET /healthz HTTP/1.1\r\nHost: {target}\r\n\r\n").into_bytes();
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut chunk = vec![0u8; 64 * 1024];
        let mut in_flight = 0;
        loop {
            if in_flight < window {
                let batch: Vec<u8> = request.repeat(window - in_flight);
                stream.write_all(&batch).await?;
                in_flight = window;
            }
            let n = match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
                Err(_) => return anyhow::Ok(None),
                Ok(n) => n?,
            };
            if n == 0 {
                return Ok(Some("closed by the server".to_string()));
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut used = 0;
            while let Some((status, len)) = http::complete_response(&buf[used..])? {
                used += len;
                in_flight -= 1;
                if status == 200 {
                    stats.answered.fetch_add(1, Ordering::Relaxed);
                } else {
                    bump(&stats.by_status, status.to_string());
                }
            }
            buf.drain(..used);
        }
    };
    match ended.await {
        Ok(None) => {}
        Ok(Some(why)) => bump(&stats.ended, why),
        Err(e) => bump(&stats.ended, format!("{e:#}")),
    }
}

/// `healthz-flood`: keep-alive connections with pipelined `GET /healthz`.
pub async fn healthz_flood(
    url: &str,
    target: SocketAddr,
    options: HealthzFlood,
    common: Common,
    server: Option<Process>,
) -> anyhow::Result<Report> {
    let HealthzFlood { connections, pipeline } = options;
    let usage = Usage::start(server);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(common.seconds);
    let stats = Arc::new(HealthzStats::default());
    let source = loopback_source(2, 0);
    let tasks: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(healthz_connection(target, source, pipeline, deadline.into(), stats.clone())))
        .collect();
    let handle = bystander::spawn(url.into(), target, common.bystander, bystander_delay(common.seconds), deadline);
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed();
    let out = bystander::finish(handle).await;

    let mut report = Report::new("healthz-flood");
    report.add(
        "connections",
        "connections × pipelined",
        json!({ "connections": connections, "pipeline": pipeline, "source": source.to_string() }),
        format!("{connections} × {pipeline} in flight, from {source}"),
    );
    report.add("seconds", "attack duration", json!(common.seconds), format!("{} s", common.seconds));
    let answered = stats.answered.load(Ordering::Relaxed);
    let rate = answered as f64 / elapsed.as_secs_f64();
    report.add(
        "answered",
        "healthz answered 200",
        json!({ "count": answered, "per_sec": rate }),
        format!("{answered} ({rate:.0} requests/s)"),
    );
    let other = take(&stats.by_status);
    report.add("other_status", "other statuses", json!(other), fmt_counts(&other));
    let ended = take(&stats.ended);
    report.add("ended", "connections ended early", json!(ended), fmt_counts(&ended));
    let label = format!("healthz-flood: {connections} connections × {pipeline} pipelined, {} s", common.seconds);
    let attack = format!("{rate:.0} healthz/s answered; other statuses: {}", fmt_counts(&other));
    finish(&mut report, (label, common.bystander.max_p99_ms), &out, &usage, elapsed, attack);
    Ok(report)
}

/// Options of `slowloris`.
#[derive(Debug, Clone, Copy)]
pub struct Slowloris {
    pub sockets: usize,
    pub source: IpAddr,
    pub probe_source: IpAddr,
    /// Seconds between page loads by a new user.
    pub probe_every: u64,
    /// Fail unless every half-open socket was closed and every page loaded.
    pub expect_closed: bool,
}

/// How one half-open socket ended, seconds after its partial request.
#[derive(Debug, Clone)]
struct Closed {
    after: f64,
    /// The status line of what the server sent before closing, if anything.
    answer: Option<String>,
    how: &'static str,
}

/// Sends a partial request head and waits for the server to give up on it.
async fn half_open(mut stream: tokio::net::TcpStream, sent: Instant, deadline: tokio::time::Instant) -> Option<Closed> {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let how = match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return None,
            Ok(Ok(0)) => "closed",
            Ok(Ok(n)) => {
                if got.len() < 4096 {
                    got.extend_from_slice(&chunk[..n]);
                }
                continue;
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => "reset",
            Ok(Err(_)) => "error",
        };
        let answer = (!got.is_empty())
            .then(|| String::from_utf8_lossy(&got).lines().next().unwrap_or_default().trim().to_string());
        return Some(Closed { after: sent.elapsed().as_secs_f64(), answer, how });
    }
}

/// `slowloris`: sockets from one address that send part of a request head and then
/// nothing; meanwhile a new user loads `/` now and then, and the bystander chats.
pub async fn slowloris(
    url: &str,
    target: SocketAddr,
    options: Slowloris,
    common: Common,
    server: Option<Process>,
) -> anyhow::Result<Report> {
    let Slowloris { sockets, source, probe_source, probe_every, expect_closed } = options;
    let setup = Instant::now();
    let mut opened = Vec::with_capacity(sockets);
    let mut refused: BTreeMap<String, u64> = BTreeMap::new();
    for wave in (0..sockets).collect::<Vec<_>>().chunks(WAVE) {
        let tasks: Vec<_> = wave
            .iter()
            .map(|_| {
                tokio::spawn(async move {
                    let mut s = tcp_connect(target, Some(source)).await?;
                    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n").await?;
                    anyhow::Ok((s, Instant::now()))
                })
            })
            .collect();
        for t in tasks {
            match t.await {
                Ok(Ok(s)) => opened.push(s),
                Ok(Err(e)) => *refused.entry(connect_failure_class(&e)).or_default() += 1,
                Err(_) => *refused.entry("panic".into()).or_default() += 1,
            }
        }
    }
    let setup = setup.elapsed();
    let open = opened.len();
    let usage = Usage::start(server);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(common.seconds);
    let watchers: Vec<_> =
        opened.into_iter().map(|(s, sent)| tokio::spawn(half_open(s, sent, deadline.into()))).collect();
    let handle = bystander::spawn(url.into(), target, common.bystander, bystander_delay(common.seconds), deadline);
    // A new user from another address loads the page now and then.
    let probes = tokio::spawn(async move {
        let mut results = Vec::new();
        let host = target.to_string();
        let mut at = started + Duration::from_secs(1).min(Duration::from_secs(common.seconds) / 4);
        while at < deadline {
            tokio::time::sleep_until(at.into()).await;
            let limit = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
            let when = started.elapsed().as_secs_f64();
            let r = http::get(target, &host, "/", Some(probe_source), limit).await;
            results.push((when, r));
            at += Duration::from_secs(probe_every.max(1));
        }
        results
    });
    let mut closed = Vec::new();
    for w in watchers {
        if let Ok(Some(c)) = w.await {
            closed.push(c);
        }
    }
    let probes = probes.await.unwrap_or_default();
    let elapsed = started.elapsed();
    let out = bystander::finish(handle).await;

    let mut report = Report::new("slowloris");
    report.add(
        "sockets",
        "half-open sockets / asked",
        json!({ "open": open, "asked": sockets, "source": source.to_string() }),
        format!("{open} / {sockets} from {source} (set up in {:.1} s)", setup.as_secs_f64()),
    );
    report.add("refused", "sockets refused", json!(refused), fmt_counts(&refused));
    report.add("seconds", "attack duration", json!(common.seconds), format!("{} s", common.seconds));
    closed.sort_by(|a, b| a.after.total_cmp(&b.after));
    let at = |q: f64| closed.get(((closed.len() as f64 - 1.0) * q).round() as usize).map(|c| c.after);
    let mut hows: BTreeMap<String, u64> = BTreeMap::new();
    for c in &closed {
        let key = match &c.answer {
            Some(line) => format!("{} after {line:?}", c.how),
            None => c.how.to_string(),
        };
        *hows.entry(key).or_default() += 1;
    }
    let timing = match (at(0.0), at(0.5), at(1.0)) {
        (Some(first), Some(median), Some(last)) => {
            format!("first {first:.1} s, median {median:.1} s, last {last:.1} s")
        }
        _ => "none closed".into(),
    };
    report.add(
        "closed",
        "closed by the server",
        json!({ "count": closed.len(), "first_s": at(0.0), "median_s": at(0.5), "last_s": at(1.0), "how": hows }),
        format!("{} of {open} within {} s ({timing}; {})", closed.len(), common.seconds, fmt_counts(&hows)),
    );
    // Cumulative closes every 5 s.
    let steps: Vec<(u64, usize)> = (1..=common.seconds.div_ceil(5))
        .map(|k| (k * 5, closed.iter().filter(|c| c.after <= (k * 5) as f64).count()))
        .collect();
    report.add(
        "closed_by_second",
        "closed by",
        json!(steps.iter().map(|(s, n)| json!({ "second": s, "closed": n })).collect::<Vec<_>>()),
        steps.iter().map(|(s, n)| format!("{s} s: {n}")).collect::<Vec<_>>().join(", "),
    );
    let mut loads = Vec::new();
    let mut shown = Vec::new();
    for (when, r) in &probes {
        match r {
            Ok(f) => {
                let total = f.total.as_secs_f64() * 1000.0;
                loads.push(json!({ "at_s": when, "status": f.status, "bytes": f.body.len(), "total_ms": total,
                    "first_byte_ms": f.first_byte.as_secs_f64() * 1000.0 }));
                let kb = f.body.len() as f64 / 1000.0;
                shown.push(format!("@{when:.1}s {} {kb:.1} KB in {}", f.status, fmt_ms(total)));
            }
            Err(e) => {
                loads.push(json!({ "at_s": when, "error": format!("{e:#}") }));
                shown.push(format!("@{when:.1}s failed: {e:#}"));
            }
        }
    }
    report.add("page_loads", &format!("new user GET / from {probe_source}"), json!(loads), shown.join("; "));
    let label = format!("slowloris: {sockets} half-open from one address, {} s", common.seconds);
    let ok_loads: Vec<&http::Fetched> =
        probes.iter().filter_map(|(_, r)| r.as_ref().ok()).filter(|f| f.status == 200).collect();
    let worst = ok_loads.iter().map(|f| f.total.as_secs_f64() * 1000.0).fold(0.0, f64::max);
    let attack = format!(
        "{} of {open} closed by the server in {} s ({timing}); new user GET /: {}/{} loaded, slowest {}",
        closed.len(),
        common.seconds,
        ok_loads.len(),
        probes.len(),
        fmt_ms(worst)
    );
    if expect_closed {
        if closed.len() < open {
            report.fail(format!(
                "{} of {open} half-open sockets were still open after {} s",
                open - closed.len(),
                common.seconds
            ));
        }
        if ok_loads.len() < probes.len() || probes.is_empty() {
            report.fail(format!("a new user loaded the page {} times out of {}", ok_loads.len(), probes.len()));
        }
    }
    finish(&mut report, (label, common.bystander.max_p99_ms), &out, &usage, elapsed, attack);
    Ok(report)
}
