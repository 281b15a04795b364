//! The bystander: an ordinary video pair chatting while an attack runs.
//!
//! Two sockets join mode video with no interests, are matched with each other, both
//! send `ready`, then A sends a chat line every ~20 ms carrying a sequence number and
//! its send time; B timestamps each line on arrival. Both sockets live in this process,
//! so one monotonic clock times the relay A → server → B. The pair runs on its own
//! thread and runtime, so it never queues behind the attack's tasks in loadgen.

use crate::client::Client;
use crate::scenarios::histogram;
use anyhow::{Context, bail};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use protocol::{ClientMsg, MatchId, Mode, Preferences, ServerMsg};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// How long B keeps reading after A's last line, for lines still in flight.
const DRAIN: Duration = Duration::from_secs(2);

/// Where and how often the bystander chats.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub source: IpAddr,
    pub interval: Duration,
    /// The run fails if the relay p99 is above this (ms).
    pub max_p99_ms: Option<f64>,
}

/// What the bystander saw.
#[derive(Debug)]
pub struct Outcome {
    /// Both sockets welcomed, from the start of the attempt.
    pub connect: Option<Duration>,
    /// Both `join`s sent until both `matched`.
    pub join_to_matched: Option<Duration>,
    /// A → B relay time of each chat line (µs).
    pub latency: Histogram<u64>,
    pub sent: u64,
    pub received: u64,
    /// Lines that arrived after a later one.
    pub out_of_order: u64,
    /// `error` replies (and other surprises) by code.
    pub errors: BTreeMap<String, u64>,
    /// Why the bystander could not finish, if it could not.
    pub failure: Option<String>,
}

impl Outcome {
    fn new() -> Self {
        Self {
            connect: None,
            join_to_matched: None,
            latency: histogram(),
            sent: 0,
            received: 0,
            out_of_order: 0,
            errors: BTreeMap::new(),
            failure: None,
        }
    }

    /// (p50, p99, max) in ms, or `None` without any measurement.
    pub fn percentiles(&self) -> Option<(f64, f64, f64)> {
        if self.latency.is_empty() {
            return None;
        }
        let p = |q: f64| self.latency.value_at_quantile(q) as f64 / 1000.0;
        Some((p(0.50), p(0.99), self.latency.max() as f64 / 1000.0))
    }
}

/// Starts the bystander on its own thread: it waits `delay`, connects, and chats until
/// `deadline`. Await the result with [`finish`].
pub fn spawn(
    url: String,
    target: SocketAddr,
    settings: Settings,
    delay: Duration,
    deadline: Instant,
) -> std::thread::JoinHandle<Outcome> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
        match runtime {
            Ok(rt) => rt.block_on(async move {
                tokio::time::sleep(delay).await;
                run(&url, target, settings, deadline).await
            }),
            Err(e) => {
                let mut out = Outcome::new();
                out.failure = Some(format!("cannot start the bystander's runtime: {e}"));
                out
            }
        }
    })
}

/// The bystander's outcome, once its thread ends.
pub async fn finish(handle: std::thread::JoinHandle<Outcome>) -> Outcome {
    match tokio::task::spawn_blocking(move || handle.join()).await {
        Ok(Ok(outcome)) => outcome,
        _ => {
            let mut out = Outcome::new();
            out.failure = Some("the bystander's thread panicked".into());
            out
        }
    }
}

/// Waits for `matched`, counting anything else that is an error.
async fn await_matched(c: &mut Client, errors: &mut BTreeMap<String, u64>) -> anyhow::Result<MatchId> {
    loop {
        match c.recv().await? {
            ServerMsg::Matched { match_id, .. } => return Ok(match_id),
            ServerMsg::Error { code, .. } => *errors.entry(code.as_str().to_string()).or_default() += 1,
            _ => {}
        }
    }
}

fn chat_text(seq: u64, micros: u64) -> String {
    format!("bystander seq={seq} ts={micros}")
}

fn parse_chat(text: &str) -> Option<(u64, u64)> {
    let mut seq = None;
    let mut ts = None;
    for part in text.split(' ') {
        if let Some(v) = part.strip_prefix("seq=") {
            seq = v.parse().ok();
        } else if let Some(v) = part.strip_prefix("ts=") {
            ts = v.parse().ok();
        }
    }
    Some((seq?, ts?))
}

async fn run(url: &str, target: SocketAddr, settings: Settings, deadline: Instant) -> Outcome {
    let mut out = Outcome::new();
    let end = tokio::time::Instant::from_std(deadline);
    let started = Instant::now();
    let connect = async {
        let a = Client::connect(url, target, Some(settings.source)).await.context("bystander A")?;
        let b = Client::connect(url, target, Some(settings.source)).await.context("bystander B")?;
        anyhow::Ok((a, b))
    };
    let (mut a, mut b) = match tokio::time::timeout_at(end, connect).await {
        Err(_) => {
            out.failure = Some(format!("not connected after {:.1} s", started.elapsed().as_secs_f64()));
            return out;
        }
        Ok(Err(e)) => {
            out.failure = Some(format!("cannot connect: {e:#}"));
            return out;
        }
        Ok(Ok(pair)) => pair,
    };
    out.connect = Some(started.elapsed());

    let joined = Instant::now();
    let pairing = async {
        a.send(&ClientMsg::Join(Preferences::new(Mode::Video))).await?;
        b.send(&ClientMsg::Join(Preferences::new(Mode::Video))).await?;
        let (mut ea, mut eb) = (BTreeMap::new(), BTreeMap::new());
        let (ma, mb) = tokio::join!(await_matched(&mut a, &mut ea), await_matched(&mut b, &mut eb));
        for (k, v) in ea.into_iter().chain(eb) {
            *out.errors.entry(k).or_default() += v;
        }
        let (ma, mb) = (ma?, mb?);
        if ma != mb {
            bail!("the two bystanders were matched with other users");
        }
        a.send(&ClientMsg::Ready { match_id: ma }).await?;
        b.send(&ClientMsg::Ready { match_id: ma }).await?;
        anyhow::Ok(ma)
    };
    let match_id = match tokio::time::timeout_at(end, pairing).await {
        Err(_) => {
            out.failure = Some(format!("not matched after {:.1} s", joined.elapsed().as_secs_f64()));
            return out;
        }
        Ok(Err(e)) => {
            out.failure = Some(format!("pairing failed: {e:#}"));
            return out;
        }
        Ok(Ok(id)) => id,
    };
    out.join_to_matched = Some(joined.elapsed());

    let epoch = Instant::now();
    let sent = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sender = {
        let (sent, done) = (sent.clone(), done.clone());
        async move {
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            let mut tick = tokio::time::interval(settings.interval);
            // Never catch up in a burst after a stall: that would trip the rate limit.
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failure = None;
            let mut seq = 0;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(end) => break,
                    _ = tick.tick() => {
                        let text = chat_text(seq, epoch.elapsed().as_micros() as u64);
                        if let Err(e) = a.send(&ClientMsg::Chat { match_id, text }).await {
                            failure = Some(format!("A could not send: {e:#}"));
                            break;
                        }
                        seq += 1;
                        sent.store(seq, Ordering::Release);
                    }
                    msg = a.ws.next() => match msg {
                        Some(Ok(Message::Text(t))) => {
                            if let Ok(ServerMsg::Error { code, .. }) = ServerMsg::from_json(t.as_str()) {
                                *errors.entry(code.as_str().to_string()).or_default() += 1;
                            } else if let Ok(ServerMsg::PeerLeft { reason, .. }) = ServerMsg::from_json(t.as_str()) {
                                failure = Some(format!("A was told its peer left ({reason:?})"));
                                break;
                            }
                        }
                        Some(Ok(Message::Close(frame))) => {
                            failure = Some(format!("A was closed by the server: {frame:?}"));
                            break;
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            failure = Some(format!("A's socket failed: {e}"));
                            break;
                        }
                        None => {
                            failure = Some("A's socket ended".into());
                            break;
                        }
                    },
                }
            }
            done.store(true, Ordering::Release);
            let _ = futures_util::SinkExt::close(&mut a.ws).await;
            (errors, failure)
        }
    };
    let receiver = {
        let (sent, done) = (sent.clone(), done.clone());
        let out = &mut out;
        async move {
            let mut last_seq = None;
            let mut failure = None;
            loop {
                if done.load(Ordering::Acquire) && out.received >= sent.load(Ordering::Acquire) {
                    break;
                }
                if tokio::time::Instant::now() >= end + DRAIN {
                    break;
                }
                // Wake now and then to notice that A is done and everything arrived.
                let msg = match tokio::time::timeout(Duration::from_millis(100), b.ws.next()).await {
                    Err(_) => continue,
                    Ok(msg) => msg,
                };
                match msg {
                    Some(Ok(Message::Text(t))) => match ServerMsg::from_json(t.as_str()) {
                        Ok(ServerMsg::Chat { text, .. }) => {
                            let now = epoch.elapsed().as_micros() as u64;
                            if let Some((seq, ts)) = parse_chat(&text) {
                                let _ = out.latency.record(now.saturating_sub(ts).max(1));
                                out.received += 1;
                                if last_seq.is_some_and(|l| seq < l) {
                                    out.out_of_order += 1;
                                }
                                last_seq = Some(last_seq.map_or(seq, |l: u64| l.max(seq)));
                            }
                        }
                        Ok(ServerMsg::Error { code, .. }) => {
                            *out.errors.entry(code.as_str().to_string()).or_default() += 1
                        }
                        Ok(ServerMsg::PeerLeft { reason, .. }) => {
                            if !done.load(Ordering::Acquire) {
                                failure = Some(format!("B was told its peer left ({reason:?})"));
                            }
                            break;
                        }
                        _ => {}
                    },
                    Some(Ok(Message::Close(frame))) => {
                        failure = Some(format!("B was closed by the server: {frame:?}"));
                        break;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        failure = Some(format!("B's socket failed: {e}"));
                        break;
                    }
                    None => {
                        failure = Some("B's socket ended".into());
                        break;
                    }
                }
            }
            let _ = futures_util::SinkExt::close(&mut b.ws).await;
            failure
        }
    };
    let ((errors, a_failure), b_failure) = tokio::join!(sender, receiver);
    for (k, v) in errors {
        *out.errors.entry(k).or_default() += v;
    }
    out.sent = sent.load(Ordering::Acquire);
    out.failure = a_failure.or(b_failure);
    out
}

/// Milliseconds, with fewer decimals as they grow.
pub fn fmt_ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2} ms")
    } else if v < 100.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.0} ms")
    }
}

/// Adds the bystander's rows and JSON to `report`.
pub fn add_to(report: &mut crate::scenarios::Report, out: &Outcome) {
    use serde_json::json;
    let opt_ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
    report.add(
        "bystander_connect_ms",
        "bystander: both connected in",
        json!(opt_ms(out.connect)),
        opt_ms(out.connect).map_or("never".into(), fmt_ms),
    );
    report.add(
        "bystander_join_to_matched_ms",
        "bystander: join → matched",
        json!(opt_ms(out.join_to_matched)),
        opt_ms(out.join_to_matched).map_or("never".into(), fmt_ms),
    );
    crate::scenarios::add_percentiles(report, "bystander_chat", "bystander: chat A → B", &out.latency);
    report.add(
        "bystander_lines",
        "bystander: lines received / sent",
        json!({ "sent": out.sent, "received": out.received, "out_of_order": out.out_of_order }),
        format!(
            "{} / {} ({} lost, {} out of order)",
            out.received,
            out.sent,
            out.sent.saturating_sub(out.received),
            out.out_of_order
        ),
    );
    report.add("bystander_errors", "bystander: error replies", json!(out.errors), fmt_counts(&out.errors));
    report.add(
        "bystander_failure",
        "bystander: failure",
        json!(out.failure),
        out.failure.clone().unwrap_or_else(|| "none".into()),
    );
}

/// The bystander's cells of a README row: p50, p99, max, lines.
pub fn cells(out: &Outcome) -> String {
    let lines = format!("{}/{}", out.received, out.sent);
    match (out.percentiles(), &out.failure) {
        (Some((p50, p99, max)), None) => format!("{} | {} | {} | {lines}", fmt_ms(p50), fmt_ms(p99), fmt_ms(max)),
        (Some((p50, p99, max)), Some(why)) => {
            format!("{} | {} | {} | {lines} ({why})", fmt_ms(p50), fmt_ms(p99), fmt_ms(max))
        }
        (None, why) => format!("– | – | – | {lines} ({})", why.as_deref().unwrap_or("nothing measured")),
    }
}

/// The header matching [`cells`], after a first column naming the run.
pub const HEADER: &str = "| run | bystander chat p50 | p99 | max | lines recv/sent | attack |";

/// `{"a": 1, "b": 2}` as `a 1, b 2` (or `none`).
pub fn fmt_counts(counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    counts.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_marks_round_trip() {
        assert_eq!(parse_chat(&chat_text(7, 123_456)), Some((7, 123_456)));
        assert_eq!(parse_chat("hello"), None);
    }

    #[test]
    fn counts_are_listed() {
        let mut c = BTreeMap::new();
        assert_eq!(fmt_counts(&c), "none");
        c.insert("rate_limited".to_string(), 3);
        c.insert("bad_message".to_string(), 1);
        assert_eq!(fmt_counts(&c), "bad_message 1, rate_limited 3");
    }
}
