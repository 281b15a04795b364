//! `loadgen`: drives a Let'sMeet server over the wire protocol and reports how fast
//! and how lean it is.
//!
//! Scenarios (each bounded in count and time, and refusing any non-loopback target):
//! - `idle`: open N connections, wait for every `welcome`; connect rate and the
//!   server's resident memory per connection (from /proc, given its PID).
//! - `churn`: C users loop join → matched → ready → offer/answer (~4 KB SDP) → 6 ICE
//!   candidates each way → 3 chat lines each way → next, for D seconds; matches per
//!   second, join→matched (all, and the later joiner of each pair: the server's own
//!   pairing time), signal relay and chat relay latency percentiles, errors, server CPU per
//!   1,000 matches, and cross-talk violations (must be zero).
//! - `burst`: N users join at once; time until all are matched.
//!
//! Attack scenarios, each measuring a "bystander" video pair's chat relay latency
//! (p50/p99/max) while the attack runs (see `bystander.rs` and `attacks.rs`):
//! - `bystander`: the pair alone, the baseline.
//! - `rejoin-flood`: K sockets from M addresses loop `stop` + `join` (text, a fresh
//!   interest each time) at R/s; error replies by code.
//! - `healthz-flood`: C keep-alive connections with pipelined `GET /healthz`;
//!   requests answered per second.
//! - `slowloris`: N sockets from one address send part of a request head, then
//!   nothing; when the server closes them, and whether a new user can load `/`.
//! - `soak`: churn with hostile clients mixed in, RSS and `/healthz` sampled, and
//!   nothing may be left in the server once everyone has gone (`soak.rs`).
//!
//! `--transport sse` runs `idle` and `churn` over the fallback transport instead of
//! WebSockets (`/sse` on the same host and port: server-sent events down, batched POSTs
//! up; see `sse.rs`), with the same scenario code (`transport.rs`).
//!
//! Output: a table for people and one JSON line per run for scripts; `churn --plot`
//! also draws latency percentiles second by second as an SVG.

mod attacks;
mod backlog;
mod bystander;
mod client;
mod http;
mod plot;
mod proc;
mod scenarios;
mod soak;
mod sse;
mod transport;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use transport::{Connector, Transport};

/// Most connections any scenario opens.
const MAX_CONNECTIONS: usize = 20_000;
/// Longest any scenario runs.
const MAX_SECONDS: u64 = 600;
/// Longest a soak runs.
const MAX_SOAK_SECONDS: u64 = 4 * 3600;

/// The bystander pair measured during an attack.
#[derive(Debug, Args)]
struct BystanderArgs {
    /// Milliseconds between the bystander's chat lines (the server allows 50 messages/s
    /// per connection by default, i.e. 20 ms).
    #[arg(long, default_value_t = 20)]
    chat_interval_ms: u64,
    /// The bystander pair's source address (loopback).
    #[arg(long, default_value = "127.0.0.2")]
    bystander_source: IpAddr,
    /// Fail (exit non-zero) if the bystander's chat relay p99 exceeds this many ms, or
    /// if it could not measure at all (used by `make test` against the release build).
    #[arg(long)]
    max_p99_ms: Option<f64>,
    /// Niceness (0-19) of the threads that run the attack; the bystander's thread keeps
    /// normal priority. On one machine the attack's load generator and the server share
    /// the cores, which a remote attacker's does not: at 0, the generator takes the CPU
    /// the server needs and the bystander measures the generator rather than the server.
    #[arg(long, default_value_t = 10)]
    attacker_nice: i32,
}

#[derive(Debug, Parser)]
#[command(version, about = "Benchmark a Let'sMeet server on loopback")]
struct Cli {
    /// The server's WebSocket URL (loopback only). `churn` and `burst` take several,
    /// comma-separated (the nodes of a cluster), and spread users over them in turn.
    #[arg(long, default_value = "ws://127.0.0.1:3000/ws", global = true, value_delimiter = ',')]
    url: Vec<String>,
    /// The server's process id, to read its memory and CPU time from /proc; several,
    /// comma-separated, are summed (a cluster's nodes, matchers and Redis).
    #[arg(long, global = true, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// How `idle` and `churn` talk to the server: WebSockets (`/ws`), or the fallback
    /// (`/sse` on the same host and port: server-sent events down, batched POSTs up,
    /// two TCP connections per session from the same source address).
    #[arg(long, value_enum, default_value_t = Transport::Ws, global = true)]
    transport: Transport,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Open N idle connections and measure memory per connection.
    Idle {
        #[arg(short = 'n', long, default_value_t = 1_000)]
        connections: usize,
        /// Spread sockets over this many source addresses 127.0.0.1.. (ports run out
        /// around 28,000 per address; the server takes 20 connections per address by
        /// default, and a fallback session is two TCP connections).
        #[arg(long, default_value_t = 1)]
        sources: u8,
        /// Seconds to hold the connections before closing them.
        #[arg(long, default_value_t = 2)]
        hold: u64,
    },
    /// Users churning through matches with full signaling and chat.
    Churn {
        #[arg(short = 'c', long, default_value_t = 200)]
        users: usize,
        #[arg(short = 'd', long, default_value_t = 10)]
        seconds: u64,
        /// Spread users over this many source addresses 127.0.0.1.. (mind the server's
        /// per-address caps: 20 connections by default; a fallback session is two TCP
        /// connections). 1: the system's choice.
        #[arg(long, default_value_t = 1)]
        sources: u8,
        /// Milliseconds a pair stays together after the exchange before `next`
        /// (0: as fast as possible, i.e. a saturation test).
        #[arg(long, default_value_t = 0)]
        think_ms: u64,
        /// Each user picks 0 to this many interests out of 20 topics (0: none, which
        /// measures matching without anyone holding out for a shared interest).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(0..=10))]
        max_interests: u8,
        /// Also write an SVG plot of latency percentiles, second by second, here.
        #[arg(long)]
        plot: Option<std::path::PathBuf>,
    },
    /// Everyone joins at once.
    Burst {
        #[arg(short = 'n', long, default_value_t = 1_000)]
        users: usize,
    },
    /// The bystander pair alone: the baseline for the attack scenarios.
    Bystander {
        /// Seconds the run lasts.
        #[arg(short = 'd', long, default_value_t = 20)]
        seconds: u64,
        #[command(flatten)]
        bystander: BystanderArgs,
    },
    /// Sockets looping `stop` + `join` (text, a fresh interest each time), from many
    /// addresses (127.1.x.y), while the bystander chats.
    RejoinFlood {
        /// Attacker sockets.
        #[arg(short = 'k', long, default_value_t = 1_000)]
        attackers: usize,
        /// Source addresses they are spread over (mind the server's per-address caps).
        #[arg(short = 'm', long, default_value_t = 100)]
        addresses: usize,
        /// `stop` + `join` rounds per second per socket (two messages each).
        #[arg(short = 'r', long, default_value_t = 20)]
        rate: u32,
        /// Seconds the run lasts.
        #[arg(short = 'd', long, default_value_t = 20)]
        seconds: u64,
        #[command(flatten)]
        bystander: BystanderArgs,
    },
    /// Keep-alive connections with pipelined `GET /healthz` (from 127.2.0.1), while the
    /// bystander chats.
    HealthzFlood {
        /// Keep-alive connections, all from 127.2.0.1.
        #[arg(short = 'c', long, default_value_t = 50)]
        connections: usize,
        /// Requests in flight per connection.
        #[arg(long, default_value_t = 16)]
        pipeline: usize,
        /// Seconds the run lasts.
        #[arg(short = 'd', long, default_value_t = 20)]
        seconds: u64,
        #[command(flatten)]
        bystander: BystanderArgs,
    },
    /// Sockets from one address that send part of a request head, then nothing; a new
    /// user loads `/` now and then, and the bystander chats.
    Slowloris {
        /// Half-open sockets.
        #[arg(short = 'n', long, default_value_t = 1_000)]
        sockets: usize,
        /// Seconds the attack lasts (and the longest a close is waited for).
        #[arg(short = 'd', long, default_value_t = 30)]
        seconds: u64,
        /// The one source address of the half-open sockets.
        #[arg(long, default_value = "127.3.0.1")]
        source: IpAddr,
        /// Where the new user loading `/` comes from.
        #[arg(long, default_value = "127.4.0.1")]
        probe_source: IpAddr,
        /// Seconds between the new user's page loads.
        #[arg(long, default_value_t = 5)]
        probe_every: u64,
        /// Fail unless the server closed every half-open socket it accepted within the
        /// run, and every page load succeeded.
        #[arg(long)]
        expect_closed: bool,
        #[command(flatten)]
        bystander: BystanderArgs,
    },
    /// The matcher service draining a backlog: N waiting tickets written into a
    /// cluster's Redis, paired by a matcher started (or failing over) afterwards.
    MatcherBacklog {
        /// The cluster's Redis (loopback only).
        #[arg(long)]
        redis_url: String,
        #[arg(short = 'n', long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(2..=1_000_000))]
        tickets: u64,
        /// Seconds to wait for a matcher to take the lease and drain the queue.
        #[arg(long, default_value_t = 120)]
        wait: u64,
    },
    /// Churn with hostile clients mixed in; samples RSS and /healthz, and fails if the
    /// server still holds anything once everyone has left.
    Soak {
        /// How long clients run (1800 for a 30 minute soak).
        #[arg(short = 'd', long, default_value_t = 60)]
        seconds: u64,
        /// Churn users (the `churn` scenario's).
        #[arg(short = 'c', long, default_value_t = 200)]
        users: usize,
        /// Milliseconds a churn pair stays together after its exchange.
        #[arg(long, default_value_t = 1_000)]
        think_ms: u64,
        /// Each churn user picks 0 to this many interests out of 20 topics.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(0..=10))]
        max_interests: u8,
        /// Source addresses of the churn users (127.5.x.y).
        #[arg(long, default_value_t = 20)]
        user_sources: usize,
        /// Hostile agents, each cycling through flood, rejoin, oversized, garbage,
        /// never-read, resume-garbage and resume-stolen episodes.
        #[arg(long, default_value_t = 40)]
        hostile: usize,
        /// Source addresses of the hostile agents (127.6.x.y).
        #[arg(long, default_value_t = 40)]
        hostile_sources: usize,
        /// The server's grace period: the final check waits this plus 2 s after the
        /// last client closed.
        #[arg(long, default_value_t = 15)]
        grace_secs: u64,
        /// Seconds between RSS and /healthz samples.
        #[arg(long, default_value_t = 10)]
        sample_secs: u64,
        /// Prometheus URL (loopback) whose gauges about tables, sessions, waiting and
        /// connections are printed at the end, e.g. http://127.0.0.1:3900/metrics.
        #[arg(long)]
        metrics_url: Option<String>,
        /// Size of the oversized frames (the server's limit is 65,536 by default).
        #[arg(long, default_value_t = 100_000)]
        oversize_bytes: usize,
    },
}

impl BystanderArgs {
    fn settings(&self) -> anyhow::Result<bystander::Settings> {
        if !self.bystander_source.is_loopback() {
            bail!("--bystander-source must be a loopback address");
        }
        if self.chat_interval_ms == 0 || self.chat_interval_ms > 10_000 {
            bail!("--chat-interval-ms between 1 and 10,000, please");
        }
        if !(0..=19).contains(&self.attacker_nice) {
            bail!("--attacker-nice between 0 and 19, please");
        }
        Ok(bystander::Settings {
            source: self.bystander_source,
            interval: Duration::from_millis(self.chat_interval_ms),
            max_p99_ms: self.max_p99_ms,
        })
    }
}

fn check_seconds(seconds: u64, max: u64) -> anyhow::Result<()> {
    if seconds == 0 || seconds > max {
        bail!("between 1 and {max} seconds, please");
    }
    Ok(())
}

fn check_loopback(ip: IpAddr, flag: &str) -> anyhow::Result<()> {
    if !ip.is_loopback() {
        bail!("{flag} must be a loopback address, got {ip}");
    }
    Ok(())
}

/// The target address, refusing anything but loopback.
fn loopback_target(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url
        .strip_prefix("ws://")
        .with_context(|| format!("only ws:// URLs are supported (plain loopback), got {url}"))?;
    http::loopback_addr(rest.split('/').next().unwrap_or_default())
}

impl Scenario {
    /// The niceness of the runtime's threads: an attack's, lowered; any other, 0.
    fn worker_nice(&self) -> i32 {
        match self {
            Scenario::Bystander { bystander, .. }
            | Scenario::RejoinFlood { bystander, .. }
            | Scenario::HealthzFlood { bystander, .. }
            | Scenario::Slowloris { bystander, .. } => bystander.attacker_nice.clamp(0, 19),
            _ => 0,
        }
    }
}

/// Lowers the calling thread's priority (Linux sets niceness per thread).
fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice) {
        eprintln!("warning: cannot lower a load generator thread's priority: {e}");
    }
}

/// The runtime's worker and blocking threads run the scenario's tasks; the main thread
/// (and the bystander's thread, started from it) keep the priority they had.
fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let nice = cli.scenario.worker_nice();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(move || lower_priority(nice))
        .build()
        .context("cannot start the async runtime")?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let targets: Vec<(String, SocketAddr)> =
        cli.url.iter().map(|u| Ok((u.clone(), loopback_target(u)?))).collect::<anyhow::Result<_>>()?;
    if targets.len() > 1 && !matches!(cli.scenario, Scenario::Churn { .. } | Scenario::Burst { .. }) {
        bail!("several --url apply to churn and burst only");
    }
    if targets.len() > 1 && cli.transport != Transport::Ws {
        bail!("several --url need --transport ws");
    }
    let (url, target) = targets.first().cloned().context("--url is required")?;
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    // A fallback session holds two sockets: its event stream and its POST connection.
    let sockets_per_client: u64 = if cli.transport == Transport::Sse { 2 } else { 1 };
    let check = |n: usize| -> anyhow::Result<()> {
        if n == 0 || n > MAX_CONNECTIONS {
            bail!("between 1 and {MAX_CONNECTIONS} connections, please (got {n})");
        }
        if (n as u64) * sockets_per_client + 64 > limit {
            bail!("{n} connections need more open files than the limit here ({limit})");
        }
        Ok(())
    };
    let server = (!cli.server_pid.is_empty()).then(|| proc::Process::new(&cli.server_pid)).transpose()?;
    if cli.transport != Transport::Ws && !matches!(cli.scenario, Scenario::Idle { .. } | Scenario::Churn { .. }) {
        bail!("--transport {} applies to idle and churn only", cli.transport.name());
    }
    let report = match cli.scenario {
        Scenario::MatcherBacklog { redis_url, tickets, wait } => {
            backlog::run(&redis_url, tickets as usize, Duration::from_secs(wait.min(MAX_SECONDS))).await?
        }
        Scenario::Idle { connections, sources, hold } => {
            check(connections)?;
            if sources == 0 {
                bail!("--sources must be at least 1");
            }
            let sources: Vec<IpAddr> = (1..=sources).map(|i| IpAddr::from([127, 0, 0, i])).collect();
            let connector = Connector::new(cli.transport, &url, target);
            scenarios::idle(&connector, connections, &sources, hold.min(MAX_SECONDS), server).await?
        }
        Scenario::Churn { users, seconds, sources, think_ms, max_interests, plot } => {
            check(users)?;
            if seconds == 0 || seconds > MAX_SECONDS {
                bail!("between 1 and {MAX_SECONDS} seconds, please");
            }
            if sources == 0 {
                bail!("--sources must be at least 1");
            }
            let sources: Vec<IpAddr> =
                if sources == 1 { Vec::new() } else { (1..=sources).map(|i| IpAddr::from([127, 0, 0, i])).collect() };
            let connectors: Vec<Connector> =
                targets.iter().map(|(u, t)| Connector::new(cli.transport, u, *t)).collect();
            let options = scenarios::Churn {
                users,
                seconds,
                think_ms: think_ms.min(60_000),
                max_interests: max_interests.into(),
                plot,
                sources,
                transport: cli.transport,
            };
            scenarios::churn(&connectors, options, server).await?
        }
        Scenario::Burst { users } => {
            check(users)?;
            if users % 2 == 1 {
                bail!("burst needs an even number of users: an odd one out would never be matched");
            }
            scenarios::burst(&targets, users, server).await?
        }
        Scenario::Bystander { seconds, bystander } => {
            check_seconds(seconds, MAX_SECONDS)?;
            let common = attacks::Common { seconds, bystander: bystander.settings()? };
            attacks::baseline(&url, target, common, server).await?
        }
        Scenario::RejoinFlood { attackers, addresses, rate, seconds, bystander } => {
            check(attackers + 2)?;
            check_seconds(seconds, MAX_SECONDS)?;
            if addresses == 0 || addresses > 254 * 256 {
                bail!("--addresses between 1 and {}, please", 254 * 256);
            }
            if rate == 0 || rate > 1_000 {
                bail!("--rate between 1 and 1,000 joins/s per socket, please");
            }
            let common = attacks::Common { seconds, bystander: bystander.settings()? };
            let options = attacks::RejoinFlood { attackers, addresses, joins_per_sec: rate };
            attacks::rejoin_flood(&url, target, options, common, server).await?
        }
        Scenario::HealthzFlood { connections, pipeline, seconds, bystander } => {
            check(connections + 2)?;
            check_seconds(seconds, MAX_SECONDS)?;
            if pipeline == 0 || pipeline > 1_000 {
                bail!("--pipeline between 1 and 1,000, please");
            }
            let common = attacks::Common { seconds, bystander: bystander.settings()? };
            attacks::healthz_flood(&url, target, attacks::HealthzFlood { connections, pipeline }, common, server)
                .await?
        }
        Scenario::Slowloris { sockets, seconds, source, probe_source, probe_every, expect_closed, bystander } => {
            check(sockets + 3)?;
            check_seconds(seconds, MAX_SECONDS)?;
            check_loopback(source, "--source")?;
            check_loopback(probe_source, "--probe-source")?;
            if sockets > 28_000 {
                bail!("one source address has ports for about 28,000 sockets");
            }
            let common = attacks::Common { seconds, bystander: bystander.settings()? };
            let options = attacks::Slowloris { sockets, source, probe_source, probe_every, expect_closed };
            attacks::slowloris(&url, target, options, common, server).await?
        }
        Scenario::Soak {
            seconds,
            users,
            think_ms,
            max_interests,
            user_sources,
            hostile,
            hostile_sources,
            grace_secs,
            sample_secs,
            metrics_url,
            oversize_bytes,
        } => {
            check(users + 2 * hostile)?;
            check_seconds(seconds, MAX_SOAK_SECONDS)?;
            if user_sources == 0 || hostile_sources == 0 || user_sources > 254 * 256 || hostile_sources > 254 * 256 {
                bail!("--user-sources and --hostile-sources between 1 and {}, please", 254 * 256);
            }
            if grace_secs > 3600 || sample_secs == 0 || sample_secs > 3600 {
                bail!("--grace-secs up to 3,600 and --sample-secs between 1 and 3,600, please");
            }
            if oversize_bytes > 16 << 20 {
                bail!("--oversize-bytes up to 16 MiB, please");
            }
            let metrics_url = metrics_url.as_deref().map(http::loopback_http).transpose()?;
            let options = soak::Soak {
                seconds,
                users,
                think_ms: think_ms.min(60_000),
                max_interests: max_interests.into(),
                user_sources,
                hostile,
                hostile_sources,
                grace_secs,
                sample_secs,
                metrics_url,
                oversize_bytes,
            };
            soak::soak(&url, target, options, server).await?
        }
    };
    report.print();
    if report.failed() {
        bail!("the run saw protocol violations or errors (see above)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::loopback_target;

    #[test]
    fn only_loopback_targets_are_accepted() {
        assert!(loopback_target("ws://127.0.0.1:3000/ws").is_ok());
        assert!(loopback_target("ws://127.0.0.9:3000/ws").is_ok());
        assert!(loopback_target("ws://[::1]:3000/ws").is_ok());
        assert!(loopback_target("ws://10.0.0.1:3000/ws").is_err());
        assert!(loopback_target("ws://192.168.1.2:80/ws").is_err());
        assert!(loopback_target("wss://127.0.0.1:3000/ws").is_err(), "TLS is not supported");
    }
}
