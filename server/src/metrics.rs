//! Prometheus metrics: every name in one place, and the process-wide recorder. The
//! hub's exporter (`hub::exporter`) counts into them; `/metrics` is served by `site`.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// How often histogram samples are folded into their buckets. The recorder keeps every
/// sample until then: without upkeep, a server nobody scrapes grows by 8 bytes per
/// relayed message (about 2 MiB a minute in the soak).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the process-wide recorder once (later calls reuse it), with a thread that
/// runs its upkeep.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let handle = recorder();
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                }
            });
            if let Err(e) = spawned {
                tracing::warn!("no metrics upkeep thread ({e}): histograms grow until scraped");
            }
            handle
        })
        .clone()
}

fn recorder() -> PrometheusHandle {
    let latency = [0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1];
    let wait = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
    let inference = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
    let score = [0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 1.0];
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(RELAY_LATENCY.into()), &latency)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(QUEUE_WAIT.into()), &wait))
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(MODERATION_INFERENCE.into()), &inference))
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(MODERATION_SCORE.into()), &score))
        .expect("bucket lists are not empty")
        .install_recorder()
        .unwrap_or_else(|e| {
            // Another recorder is installed (embedding): render an empty handle.
            tracing::warn!("metrics recorder not installed: {e}");
            PrometheusBuilder::new().build_recorder().handle()
        })
}

pub const CONNECTIONS: &str = "letsmeet_connections";
pub const SESSIONS: &str = "letsmeet_sessions";
pub const CHATTING: &str = "letsmeet_sessions_in_match";
pub const WAITING: &str = "letsmeet_waiting";
pub const MATCHES_STARTED: &str = "letsmeet_matches_started_total";
pub const MATCHES_ENDED: &str = "letsmeet_matches_ended_total";
pub const RELAYED: &str = "letsmeet_messages_relayed_total";
pub const DROPPED: &str = "letsmeet_messages_dropped_total";
pub const RATE_LIMITED: &str = "letsmeet_rate_limited_total";
pub const CLIENT_ERRORS: &str = "letsmeet_client_errors_total";
pub const REPORTS: &str = "letsmeet_reports_total";
pub const QUEUE_WAIT: &str = "letsmeet_queue_wait_seconds";
pub const RELAY_LATENCY: &str = "letsmeet_relay_latency_seconds";
pub const REFUSED_CONNECTIONS: &str = "letsmeet_connections_refused_total";
/// Connections from a trusted balancer closed for a missing or bad PROXY header.
pub const PROXY_REFUSED: &str = "letsmeet_proxy_header_refused_total";
pub const SEARCHES_DEFERRED: &str = "letsmeet_searches_deferred_total";
/// Sessions resumed here that another node of the cluster held.
pub const SESSIONS_IMPORTED: &str = "letsmeet_sessions_imported_total";
/// Cluster: envelopes received twice and dropped, and matches ended because envelopes
/// between their sides went missing.
pub const CLUSTER_REPEATS: &str = "letsmeet_cluster_repeated_envelopes_total";
pub const CLUSTER_GAPS: &str = "letsmeet_cluster_gaps_total";
/// Connections looked up in the IP database, by `found` ("yes" or "no").
pub const GEOIP_LOOKUPS: &str = "letsmeet_geoip_lookups_total";
/// Sampled frames, by `of` ("self", "peer") and `outcome` ("clean", "flagged",
/// "skipped": the classifiers were busy; "failed": not a usable JPEG, or the classifier
/// failed).
pub const MODERATION_FRAMES: &str = "letsmeet_moderation_frames_total";
/// Seconds one classifier call took, per frame (a batch's time over its frames).
pub const MODERATION_INFERENCE: &str = "letsmeet_moderation_inference_seconds";
/// The scores frames got (never the frames: they are dropped once scored).
pub const MODERATION_SCORE: &str = "letsmeet_moderation_score";
/// Bans issued on this node (or by its operator), by `kind` ("model", "reports",
/// "admin"); and bans in force in the set it enforces.
pub const BANS: &str = "letsmeet_bans_total";
pub const BANS_ACTIVE: &str = "letsmeet_bans_active";
/// Connections from banned addresses closed at accept, before a byte was read.
pub const BANNED_REFUSED: &str = "letsmeet_banned_connections_refused_total";
