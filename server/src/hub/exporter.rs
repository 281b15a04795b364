//! The metric exporter: the core's [`Metric`]s onto Prometheus. Handles are
//! registered once, so counting on the hot path is an atomic add rather than a
//! registry lookup.

use super::io::{Dropped, Ended, Metric};
use super::model::RelayKind;
use crate::metrics::{
    CLIENT_ERRORS, DROPPED, MATCHES_ENDED, MATCHES_STARTED, QUEUE_WAIT, RATE_LIMITED, RELAY_LATENCY, RELAYED, REPORTS,
    SEARCHES_DEFERRED, SESSIONS_IMPORTED,
};
use metrics::{Counter, Histogram};
use protocol::Mode;

const KINDS: [RelayKind; 3] = [RelayKind::Signal, RelayKind::Chat, RelayKind::Typing];

/// Handles on every counter the hub moves, registered with the recorder in place
/// when it was made (install it first).
#[derive(Debug)]
pub struct Metrics {
    started: [Counter; 2],
    ended: [Counter; Ended::ALL.len()],
    /// Per relay kind: [direct, buffered].
    relayed: [[Counter; 2]; 3],
    dropped: [Counter; Dropped::ALL.len()],
    reports: Counter,
    deferred: Counter,
    imported: Counter,
    queue_wait: Histogram,
    pub relay_latency: Histogram,
    pub rate_limited: Counter,
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            started: Mode::ALL.map(|m| metrics::counter!(MATCHES_STARTED, "mode" => m.as_str())),
            ended: Ended::ALL.map(|e| metrics::counter!(MATCHES_ENDED, "reason" => e.as_str())),
            relayed: KINDS.map(|k| {
                ["direct", "buffered"].map(|d| metrics::counter!(RELAYED, "kind" => k.as_str(), "delivery" => d))
            }),
            dropped: Dropped::ALL.map(|d| metrics::counter!(DROPPED, "reason" => d.as_str())),
            reports: metrics::counter!(REPORTS),
            deferred: metrics::counter!(SEARCHES_DEFERRED),
            imported: metrics::counter!(SESSIONS_IMPORTED),
            queue_wait: metrics::histogram!(QUEUE_WAIT),
            relay_latency: metrics::histogram!(RELAY_LATENCY),
            rate_limited: metrics::counter!(RATE_LIMITED),
        }
    }

    /// Counts what the hub reported.
    pub fn record(&self, m: Metric) {
        match m {
            Metric::MatchStarted(mode) => self.started[mode as usize].increment(1),
            Metric::MatchEnded(e) => self.ended[e as usize].increment(1),
            Metric::Relayed { kind, buffered } => self.relayed[kind as usize][usize::from(buffered)].increment(1),
            Metric::Dropped(d) => self.dropped[d as usize].increment(1),
            Metric::ClientError(code) => client_error(code),
            Metric::Report => self.reports.increment(1),
            Metric::QueueWait(ms) => self.queue_wait.record(ms as f64 / 1000.0),
            Metric::SearchDeferred => self.deferred.increment(1),
            Metric::Imported => self.imported.increment(1),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Counts a refused client message (rare: registered on use).
pub fn client_error(code: protocol::ErrorCode) {
    metrics::counter!(CLIENT_ERRORS, "code" => code.as_str()).increment(1);
}
