//! `server` binary: parses flags, sets up logging, serves until SIGINT/SIGTERM.

use anyhow::Context;
use clap::Parser;
use server::Config;
use server::config::LogFormat;
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let threads = config.worker_threads();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(run(config))
}

async fn run(config: Config) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&config.log).with_context(|| format!("invalid --log filter `{}`", config.log))?;
    // Log lines go to a background thread: the hub never waits on stdout (a slow pipe
    // or terminal). Lines beyond its buffer are dropped, and counted, rather than wait.
    let (writer, _flush_on_exit) = tracing_appender::non_blocking(std::io::stdout());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match config.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    // Every connection is a file descriptor: use what the hard limit allows.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) if n < u64::from(config.max_connections) + 64 => {
            tracing::warn!(
                "open-file limit is {n}: fewer than --max-connections {} sockets fit",
                config.max_connections
            )
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    let bind = server::site::bind_addr(&config)?;
    let listener = server::bind_listener(bind).with_context(|| format!("cannot listen on {bind}"))?;
    server::serve(config, listener, shutdown_signal(), |running| {
        tracing::info!("listening on http://{}", running.addr);
    })
    .await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for ctrl-c: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
