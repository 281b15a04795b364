//! The load scenarios (idle, churn, burst) and the report every scenario prints.

use crate::client::{Client, Lcg};
use crate::proc::Process;
use crate::transport::{Conn, Connector, Transport};
use anyhow::Context;
use hdrhistogram::Histogram;
use protocol::{ClientMsg, ErrorCode, MatchId, Mode, Preferences, Role, ServerMsg, SessionId, SignalPayload};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOPICS: [&str; 20] = [
    "music", "movies", "chess", "go", "art", "books", "rust", "games", "travel", "food", "cats", "dogs", "anime",
    "football", "tennis", "science", "history", "memes", "cooking", "hiking",
];

/// One run's results.
pub struct Report {
    scenario: &'static str,
    rows: Vec<(String, String)>,
    json: serde_json::Map<String, Value>,
    violations: u64,
    errors: u64,
    /// Why the run failed beyond violations and errors (printed, and a non-zero exit).
    failures: Vec<String>,
    /// A Markdown table row summing the run up, for the README.
    readme_row: Option<(String, String)>,
}

impl Report {
    pub(crate) fn new(scenario: &'static str) -> Self {
        let mut json = serde_json::Map::new();
        json.insert("scenario".into(), scenario.into());
        Self { scenario, rows: Vec::new(), json, violations: 0, errors: 0, failures: Vec::new(), readme_row: None }
    }

    pub(crate) fn add(&mut self, key: &str, label: &str, value: Value, shown: String) {
        self.json.insert(key.into(), value);
        self.rows.push((label.into(), shown));
    }

    /// A JSON field not shown in the table.
    pub(crate) fn json_insert(&mut self, key: &str, value: Value) {
        self.json.insert(key.into(), value);
    }

    /// A row shown in the table only.
    pub(crate) fn row(&mut self, label: &str, shown: String) {
        self.rows.push((label.into(), shown));
    }

    /// Marks the run failed, saying why.
    pub(crate) fn fail(&mut self, why: String) {
        self.failures.push(why);
    }

    /// Sets the Markdown header and row printed after the table.
    pub(crate) fn readme_row(&mut self, header: String, row: String) {
        self.readme_row = Some((header, row));
    }

    /// Takes over another report's rows (labels prefixed) and its JSON under `key`.
    pub(crate) fn absorb(&mut self, key: &str, prefix: &str, other: Report) {
        for (label, value) in other.rows {
            self.rows.push((format!("{prefix}{label}"), value));
        }
        self.json.insert(key.into(), Value::Object(other.json));
        self.violations += other.violations;
        self.errors += other.errors;
        self.failures.extend(other.failures);
    }

    pub fn failed(&self) -> bool {
        self.violations > 0 || self.errors > 0 || !self.failures.is_empty()
    }

    pub fn print(&self) {
        let width = self.rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        eprintln!("── loadgen {} ──", self.scenario);
        for (label, value) in &self.rows {
            eprintln!("  {label:<width$}  {value}");
        }
        for why in &self.failures {
            eprintln!("  FAILED: {why}");
        }
        if let Some((header, row)) = &self.readme_row {
            let rule = header.split('|').filter(|c| !c.is_empty()).map(|_| "|---").collect::<String>() + "|";
            eprintln!("README row:\n{header}\n{rule}\n{row}");
        }
        // The machine-readable line goes to stdout.
        #[allow(clippy::print_stdout)]
        {
            println!("{}", Value::Object(self.json.clone()));
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(crate) fn add_percentiles(report: &mut Report, key: &str, label: &str, h: &Histogram<u64>) {
    // Recorded in microseconds.
    let p = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let (p50, p95, p99, max) = (p(0.50), p(0.95), p(0.99), h.max() as f64 / 1000.0);
    report.add(
        key,
        label,
        json!({ "count": h.len(), "p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "max_ms": max }),
        format!("p50 {p50:.3} ms · p95 {p95:.3} ms · p99 {p99:.3} ms · max {max:.3} ms (n={})", h.len()),
    );
}

pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Two significant digits: enough for a plot, and small enough to keep one per second.
fn coarse_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid histogram bounds")
}

/// `idle`: N connections that only receive `welcome` (and `online`), over either
/// transport (a fallback session is an event stream plus a keep-alive POST connection,
/// both from the session's source address).
pub async fn idle(
    connector: &Connector,
    n: usize,
    sources: &[IpAddr],
    hold: u64,
    server: Option<Process>,
) -> anyhow::Result<Report> {
    let rss_before = server.map(|p| p.rss_bytes()).transpose()?;
    let started = Instant::now();
    let mut clients = Vec::with_capacity(n);
    // Connect in waves so the listen backlog never overflows.
    for wave in (0..n).collect::<Vec<_>>().chunks(256) {
        let tasks: Vec<_> = wave
            .iter()
            .map(|&i| {
                let connector = connector.clone();
                let source = sources[i % sources.len()];
                tokio::spawn(async move { connector.connect(Some(source)).await })
            })
            .collect();
        for t in tasks {
            clients.push(t.await?.context("a connection failed")?);
        }
    }
    let elapsed = started.elapsed();
    // Let the server settle (buffers, the online push) before measuring.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut report = Report::new("idle");
    connector.describe(&mut report);
    report.add("connections", "connections", json!(n), n.to_string());
    let rate = n as f64 / elapsed.as_secs_f64();
    report.add(
        "connect_per_sec",
        "connect rate",
        json!(rate),
        format!("{rate:.0} connections/s ({:.2} s)", elapsed.as_secs_f64()),
    );
    if let (Some(p), Some(before)) = (server, rss_before) {
        let after = p.rss_bytes()?;
        let per = after.saturating_sub(before) as f64 / n as f64;
        report.add(
            "server_rss_before_bytes",
            "server RSS before",
            json!(before),
            format!("{:.1} MiB", before as f64 / 1048576.0),
        );
        report.add(
            "server_rss_after_bytes",
            "server RSS with all open",
            json!(after),
            format!("{:.1} MiB", after as f64 / 1048576.0),
        );
        report.add("rss_per_connection_bytes", "RSS per connection", json!(per), format!("{:.2} KB", per / 1000.0));
    }
    connector.report_posts(&mut report);
    tokio::time::sleep(Duration::from_secs(hold)).await;
    if let Some(p) = server {
        // With a hold past the server's header timeout (10 s by default) the
        // fallback's idle POST connections are closed by now (though RSS seldom
        // shrinks once grown).
        let end = p.rss_bytes()?;
        report.add(
            "server_rss_after_hold_bytes",
            &format!("server RSS after the {hold} s hold"),
            json!(end),
            format!("{:.1} MiB", end as f64 / 1048576.0),
        );
    }
    drop(clients);
    Ok(report)
}

/// Shared bookkeeping of a churn run.
#[derive(Default)]
struct Shared {
    /// Who is in which match, as each side reported on `matched`.
    members: HashMap<MatchId, Vec<SessionId>>,
    matched: u64,
    violations: u64,
    errors: u64,
    stale: u64,
    join_to_match: Option<Histogram<u64>>,
    /// Join → matched of the later joiner of each pair (µs): how long the server took
    /// to pair two people once both were there, without the wait for a partner.
    pairing: Option<Histogram<u64>>,
    /// The first side's join → matched (µs) per match, until the second side reports.
    first_wait: HashMap<MatchId, u64>,
    /// Offer/answer/candidate relay latency (µs), from the timestamp in the payload.
    signal: Option<Histogram<u64>>,
    /// Chat line relay latency (µs).
    chat: Option<Histogram<u64>>,
    /// Per second of the run: pairing, signal relay and chat relay latency (µs), for
    /// the plot (kept only when plotting: long runs would hold thousands).
    timeline: Vec<[Histogram<u64>; 3]>,
    plotting: bool,
}

impl Shared {
    /// Records `micros` under `series` (0 pairing, 1 signal, 2 chat) for the second
    /// of the run it was measured in.
    fn at_second(&mut self, epoch: Instant, series: usize, micros: u64) {
        if !self.plotting {
            return;
        }
        let second = epoch.elapsed().as_secs() as usize;
        while self.timeline.len() <= second {
            self.timeline.push(std::array::from_fn(|_| coarse_histogram()));
        }
        let _ = self.timeline[second][series].record(micros);
    }
}

/// Options of the `churn` scenario.
pub struct Churn {
    pub users: usize,
    pub seconds: u64,
    /// Milliseconds a pair stays together after the exchange (0: saturation).
    pub think_ms: u64,
    /// Each user picks 0 to this many interests.
    pub max_interests: usize,
    /// Where to write an SVG of latency percentiles over the run.
    pub plot: Option<std::path::PathBuf>,
    /// Source addresses to spread users over (round robin); empty: the default one.
    pub sources: Vec<IpAddr>,
    pub transport: Transport,
}

/// Microseconds since the run's epoch, carried in payloads to time relays.
fn stamp(epoch: Instant) -> u64 {
    epoch.elapsed().as_micros() as u64
}

fn payload_text(kind: &str, from: SessionId, ts: u64, pad: usize) -> String {
    format!("{kind} {} from={from} ts={ts}", "x".repeat(pad))
}

fn parse_marks(text: &str) -> Option<(SessionId, u64)> {
    let mut from = None;
    let mut ts = None;
    for part in text.split(' ') {
        if let Some(v) = part.strip_prefix("from=") {
            from = v.parse().ok();
        } else if let Some(v) = part.strip_prefix("ts=") {
            ts = v.parse().ok();
        }
    }
    Some((from?, ts?))
}

/// `churn`: every user loops through full matches for `seconds`.
/// `churn`: users spread round-robin over `connectors` (one per node of a cluster, so
/// about half the pairs span two nodes when there are two).
pub async fn churn(connectors: &[Connector], options: Churn, server: Option<Process>) -> anyhow::Result<Report> {
    let Churn { users, seconds, think_ms, max_interests, plot, sources, transport } = options;
    let connector = &connectors[0];
    let shared = Arc::new(Mutex::new(Shared {
        join_to_match: Some(histogram()),
        pairing: Some(histogram()),
        signal: Some(histogram()),
        chat: Some(histogram()),
        plotting: plot.is_some(),
        ..Shared::default()
    }));
    let mut clients = Vec::with_capacity(users);
    for i in 0..users {
        let source = (!sources.is_empty()).then(|| sources[i % sources.len()]);
        clients.push(connectors[i % connectors.len()].connect(source).await?);
    }
    let epoch = Instant::now();
    let cpu_before = server.map(|p| p.cpu_seconds()).transpose()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let shared = shared.clone();
            let user = User { seed: i as u64, think_ms, max_interests };
            tokio::spawn(async move { churn_user(c, user, epoch, deadline, shared).await })
        })
        .collect();
    for t in tasks {
        if let Err(e) = t.await? {
            eprintln!("a user stopped early: {e:#}");
            shared.lock().expect("no panics while locked").errors += 1;
        }
    }
    let elapsed = epoch.elapsed().as_secs_f64();
    let cpu = match (server, cpu_before) {
        (Some(p), Some(b)) => Some(p.cpu_seconds()? - b),
        _ => None,
    };
    let s = shared.lock().expect("no panics while locked");
    let matches = s.matched / 2;
    let mut report = Report::new("churn");
    connector.describe(&mut report);
    report.add("nodes", "nodes", json!(connectors.len()), connectors.len().to_string());
    report.add("users", "users", json!(users), users.to_string());
    report.add("think_ms", "think time per match", json!(think_ms), format!("{think_ms} ms"));
    report.add("max_interests", "interests per user", json!(max_interests), format!("0–{max_interests}"));
    report.add("seconds", "duration", json!(elapsed), format!("{elapsed:.1} s"));
    report.add("matches", "matches", json!(matches), matches.to_string());
    let rate = matches as f64 / elapsed;
    report.add("matches_per_sec", "matches per second", json!(rate), format!("{rate:.0}"));
    add_percentiles(&mut report, "join_to_matched", "join → matched", s.join_to_match.as_ref().expect("set"));
    add_percentiles(&mut report, "pairing", "join → matched, later joiner", s.pairing.as_ref().expect("set"));
    add_percentiles(&mut report, "signal_relay", "signal relay", s.signal.as_ref().expect("set"));
    add_percentiles(&mut report, "chat_relay", "chat relay", s.chat.as_ref().expect("set"));
    if let Some(cpu) = cpu {
        let per_k = if matches > 0 { cpu / matches as f64 * 1000.0 } else { 0.0 };
        report.add("server_cpu_seconds", "server CPU", json!(cpu), format!("{cpu:.2} s"));
        report.add(
            "server_cpu_per_1000_matches",
            "server CPU per 1,000 matches",
            json!(per_k),
            format!("{per_k:.3} s"),
        );
    }
    connector.report_posts(&mut report);
    report.add("stale_races", "stale_match races (benign)", json!(s.stale), s.stale.to_string());
    report.add("errors", "errors", json!(s.errors), s.errors.to_string());
    report.add("violations", "cross-talk violations", json!(s.violations), s.violations.to_string());
    report.violations = s.violations;
    report.errors = s.errors;
    if let Some(path) = plot {
        let column = |i: usize| s.timeline.iter().map(|t| t[i].clone()).collect();
        let series = [
            crate::plot::Series { name: "pairing (later joiner)", per_second: column(0) },
            crate::plot::Series { name: "signal relay", per_second: column(1) },
            crate::plot::Series { name: "chat relay", per_second: column(2) },
        ];
        let title =
            format!("churn over {}: {users} users, think {think_ms} ms, 0–{max_interests} interests", transport.name());
        crate::plot::svg(&path, &title, &series).with_context(|| format!("writing {}", path.display()))?;
        report.add("plot", "plot", json!(path.display().to_string()), path.display().to_string());
    }
    Ok(report)
}

/// One churning user's settings.
#[derive(Clone, Copy)]
struct User {
    seed: u64,
    think_ms: u64,
    /// The user picks 0 to this many interests out of [`TOPICS`].
    max_interests: usize,
}

async fn churn_user(
    mut c: Conn,
    user: User,
    epoch: Instant,
    deadline: tokio::time::Instant,
    shared: Arc<Mutex<Shared>>,
) -> anyhow::Result<()> {
    let User { seed, think_ms, max_interests } = user;
    let me = c.session();
    let mut rng = Lcg(seed.wrapping_mul(7919) + 17);
    let n = (rng.next() % (max_interests as u64 + 1)) as usize;
    let interests: Vec<String> = (0..n).map(|_| TOPICS[rng.next() as usize % TOPICS.len()].to_string()).collect();
    if think_ms > 0 {
        // Arrive spread over one think time rather than all at once.
        tokio::time::sleep(Duration::from_millis(rng.next() % think_ms)).await;
    }
    c.send(&ClientMsg::Join(Preferences { interests, ..Preferences::new(Mode::Video) })).await?;
    let mut asked = Instant::now();
    let mut current: Option<(MatchId, Role)> = None;
    // Per match: messages received from the peer (offer/answer + 6 candidates + 3 chats).
    let mut received = 0;
    let mut sent_all = false;
    const EXPECTED: usize = 1 + 6 + 3;
    loop {
        let msg = match tokio::time::timeout_at(deadline, c.recv()).await {
            Err(_) => break,
            Ok(msg) => msg?,
        };
        let check =
            |shared: &mut Shared, match_id: MatchId, current: Option<(MatchId, Role)>, text: &str, chat: bool| {
                let ok_match = current.is_some_and(|(id, _)| id == match_id);
                let marks = parse_marks(text);
                let ok_sender = marks.is_some_and(|(from, _)| {
                    from != me && shared.members.get(&match_id).is_some_and(|m| m.contains(&from))
                });
                if !ok_match || !ok_sender {
                    shared.violations += 1;
                }
                if let Some((_, ts)) = marks {
                    let micros = stamp(epoch).saturating_sub(ts).max(1);
                    let h = if chat { &mut shared.chat } else { &mut shared.signal };
                    let _ = h.as_mut().expect("set").record(micros);
                    shared.at_second(epoch, if chat { 2 } else { 1 }, micros);
                }
            };
        match msg {
            ServerMsg::Matched { match_id, role, .. } => {
                {
                    let mut s = shared.lock().expect("no panics while locked");
                    s.matched += 1;
                    let waited = (asked.elapsed().as_micros() as u64).max(1);
                    let _ = s.join_to_match.as_mut().expect("set").record(waited);
                    match s.first_wait.remove(&match_id) {
                        Some(first) => {
                            let _ = s.pairing.as_mut().expect("set").record(first.min(waited));
                            s.at_second(epoch, 0, first.min(waited));
                        }
                        None => {
                            s.first_wait.insert(match_id, waited);
                        }
                    }
                    let members = s.members.entry(match_id).or_default();
                    members.push(me);
                    if members.len() > 2 {
                        s.violations += 1;
                    }
                }
                current = Some((match_id, role));
                received = 0;
                sent_all = false;
                c.send(&ClientMsg::Ready { match_id }).await?;
                if role == Role::Offerer {
                    let sdp = payload_text("offer", me, stamp(epoch), 4000);
                    c.send(&ClientMsg::Signal { match_id, payload: SignalPayload::Offer { sdp }, generation: None })
                        .await?;
                }
            }
            ServerMsg::Signal { match_id, payload, .. } => {
                let text = match &payload {
                    SignalPayload::Offer { sdp } | SignalPayload::Answer { sdp } => sdp.clone(),
                    SignalPayload::Candidate { candidate, .. } => candidate.clone(),
                    SignalPayload::EndOfCandidates => String::new(),
                };
                check(&mut shared.lock().expect("no panics while locked"), match_id, current, &text, false);
                received += 1;
                let first = matches!(payload, SignalPayload::Offer { .. } | SignalPayload::Answer { .. });
                if first && !sent_all {
                    if let SignalPayload::Offer { .. } = payload {
                        let sdp = payload_text("answer", me, stamp(epoch), 4000);
                        c.send(&ClientMsg::Signal {
                            match_id,
                            payload: SignalPayload::Answer { sdp },
                            generation: None,
                        })
                        .await?;
                    }
                    for i in 0..6 {
                        let candidate = payload_text(
                            &format!("candidate:{i} 1 udp 2122260223 127.0.0.1 5{i}000 typ host"),
                            me,
                            stamp(epoch),
                            0,
                        );
                        let payload = SignalPayload::Candidate {
                            candidate,
                            sdp_mid: Some("0".into()),
                            sdp_m_line_index: Some(0),
                        };
                        c.send(&ClientMsg::Signal { match_id, payload, generation: None }).await?;
                    }
                    for i in 0..3 {
                        let text = payload_text(&format!("chat line {i}"), me, stamp(epoch), 0);
                        c.send(&ClientMsg::Chat { match_id, text }).await?;
                    }
                    sent_all = true;
                }
            }
            ServerMsg::Chat { match_id, text } => {
                check(&mut shared.lock().expect("no panics while locked"), match_id, current, &text, true);
                received += 1;
            }
            ServerMsg::PeerLeft { .. } => {
                // Skipped: queue again.
                current = None;
                asked = Instant::now();
                c.send(&ClientMsg::Next).await?;
            }
            ServerMsg::Error { code: ErrorCode::StaleMatch, .. } => {
                shared.lock().expect("no panics while locked").stale += 1
            }
            ServerMsg::Error { code, message, .. } => {
                eprintln!("server error {code:?}: {message}");
                shared.lock().expect("no panics while locked").errors += 1;
            }
            _ => {}
        }
        // The offerer ends the match once both directions are complete.
        if let Some((_, Role::Offerer)) = current
            && sent_all
            && received >= EXPECTED
        {
            if think_ms > 0 {
                // Spread over ±50% so users do not move in lockstep.
                let d = think_ms / 2 + rng.next() % think_ms.max(1);
                tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + Duration::from_millis(d))).await;
            }
            current = None;
            asked = Instant::now();
            c.send(&ClientMsg::Next).await?;
        }
    }
    c.close().await;
    Ok(())
}

/// `burst`: N users join at the same moment.
/// `burst`: users spread round-robin over the nodes at `targets` (URL, address).
pub async fn burst(targets: &[(String, SocketAddr)], users: usize, server: Option<Process>) -> anyhow::Result<Report> {
    let mut clients = Vec::with_capacity(users);
    for i in 0..users {
        let (url, target) = &targets[i % targets.len()];
        clients.push(Client::connect(url, *target, None).await?);
    }
    let cpu_before = server.map(|p| p.cpu_seconds()).transpose()?;
    let start = Arc::new(tokio::sync::Barrier::new(users));
    let t0 = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                c.send(&ClientMsg::Join(Preferences::new(Mode::Video))).await?;
                loop {
                    if let ServerMsg::Matched { .. } = c.recv().await? {
                        return anyhow::Ok((Instant::now(), c));
                    }
                }
            })
        })
        .collect();
    let mut last = t0;
    let mut done = Vec::new();
    for t in tasks {
        let (at, c) =
            tokio::time::timeout(Duration::from_secs(60), t).await.context("not everyone was matched in 60 s")???;
        last = last.max(at);
        done.push(c);
    }
    let mut report = Report::new("burst");
    report.add("users", "users", json!(users), users.to_string());
    report.add("all_matched_ms", "time until all matched", json!(ms(last - t0)), format!("{:.1} ms", ms(last - t0)));
    if let (Some(p), Some(b)) = (server, cpu_before) {
        let cpu = p.cpu_seconds()? - b;
        report.add("server_cpu_seconds", "server CPU", json!(cpu), format!("{cpu:.3} s"));
    }
    drop(done);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_marks_round_trip() {
        let from = uuid_from(42);
        let text = payload_text("offer", from, 1234, 10);
        assert_eq!(parse_marks(&text), Some((from, 1234)));
        assert_eq!(parse_marks("no marks here"), None);
    }

    fn uuid_from(n: u128) -> protocol::ids::SessionId {
        format!("{:08x}-0000-4000-8000-{:012x}", 0, n).parse().unwrap()
    }
}
