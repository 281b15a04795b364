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
//! Output: a table for people and one JSON line per run for scripts; `churn --plot`
//! also draws latency percentiles second by second as an SVG.

mod client;
mod plot;
mod proc;
mod scenarios;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// Most connections any scenario opens.
const MAX_CONNECTIONS: usize = 20_000;
/// Longest any scenario runs.
const MAX_SECONDS: u64 = 600;

#[derive(Debug, Parser)]
#[command(version, about = "Benchmark a Let'sMeet server on loopback")]
struct Cli {
    /// The server's WebSocket URL (loopback only).
    #[arg(long, default_value = "ws://127.0.0.1:3000/ws", global = true)]
    url: String,
    /// The server's process id, to read its memory and CPU time from /proc.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
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
        /// around 28,000 per address).
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
}

/// The target address, refusing anything but loopback.
fn loopback_target(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url
        .strip_prefix("ws://")
        .with_context(|| format!("only ws:// URLs are supported (plain loopback), got {url}"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let addr = authority
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {authority}"))?
        .next()
        .with_context(|| format!("{authority} resolves to nothing"))?;
    if !addr.ip().is_loopback() {
        bail!("refusing to load {} : loadgen only targets loopback (127.0.0.0/8, ::1)", addr.ip());
    }
    Ok(addr)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let target = loopback_target(&cli.url)?;
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let check = |n: usize| -> anyhow::Result<()> {
        if n == 0 || n > MAX_CONNECTIONS {
            bail!("between 1 and {MAX_CONNECTIONS} connections, please (got {n})");
        }
        if (n as u64) + 64 > limit {
            bail!("{n} connections need more open files than the limit here ({limit})");
        }
        Ok(())
    };
    let server = cli.server_pid.map(proc::Process::new).transpose()?;
    let report = match cli.scenario {
        Scenario::Idle { connections, sources, hold } => {
            check(connections)?;
            if sources == 0 {
                bail!("--sources must be at least 1");
            }
            let sources: Vec<IpAddr> = (1..=sources).map(|i| IpAddr::from([127, 0, 0, i])).collect();
            scenarios::idle(&cli.url, target, connections, &sources, hold.min(MAX_SECONDS), server).await?
        }
        Scenario::Churn { users, seconds, think_ms, max_interests, plot } => {
            check(users)?;
            if seconds == 0 || seconds > MAX_SECONDS {
                bail!("between 1 and {MAX_SECONDS} seconds, please");
            }
            let options = scenarios::Churn {
                users,
                seconds,
                think_ms: think_ms.min(60_000),
                max_interests: max_interests.into(),
                plot,
            };
            scenarios::churn(&cli.url, target, options, server).await?
        }
        Scenario::Burst { users } => {
            check(users)?;
            if users % 2 == 1 {
                bail!("burst needs an even number of users: an odd one out would never be matched");
            }
            scenarios::burst(&cli.url, target, users, server).await?
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
