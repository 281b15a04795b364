//! The matcher service of a cluster: pairs the tickets the server nodes put in Redis.
//! Run two or more; one is active at a time (see `matcher::service`).

use clap::Parser;
use matcher::service::{self, ServiceConfig};
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "matcher", about = "Let'sMeet matcher service (cluster mode, over Redis)")]
struct Args {
    /// The cluster's Redis, e.g. redis://127.0.0.1:6379.
    #[arg(long, env = "LETSMEET_REDIS_URL")]
    redis_url: String,
    /// How long the active matcher's lease lives unless renewed: the longest pairing
    /// stops when the active matcher dies.
    #[arg(long, env = "LETSMEET_MATCHER_LEASE_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(300..=60_000))]
    lease_ms: u64,
    /// How long a ticket with interests holds out for a partner sharing one (the
    /// nodes' --interest-fallback-secs must say the same).
    #[arg(long, env = "LETSMEET_INTEREST_FALLBACK_SECS", default_value_t = 5.0)]
    interest_fallback_secs: f64,
    /// Log filter (tracing's EnvFilter syntax).
    #[arg(long, env = "LETSMEET_LOG", default_value = "info")]
    log: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !(args.interest_fallback_secs.is_finite() && args.interest_fallback_secs >= 0.0) {
        anyhow::bail!("--interest-fallback-secs must be a number of seconds, 0 or more");
    }
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let config = ServiceConfig {
        redis_url: args.redis_url,
        id: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4()),
        lease: Duration::from_millis(args.lease_ms),
        matching: matcher::Config { interest_fallback: (args.interest_fallback_secs * 1000.0) as u64 },
    };
    service::run(config, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
