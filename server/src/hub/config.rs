//! The hub's policy values, every one named (the server's flags fill them in).

use super::budget::Rate;
use super::relay::InboxLimits;
use crate::ice::IceConfig;
use std::time::Duration;

/// Chat lines kept for a session whose socket is down, delivered when it resumes.
pub const MISSED_CHAT_LIMIT: usize = 50;
/// How long each side of a new match (or of a renegotiation after a resume) has to
/// say `ready`: until then its inbox may hold signals, so a client that never does
/// cannot pin them for the whole match.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Resumes one session may make: a burst of 5, then one per 10 s. Each resume makes
/// the peer's browser start a new peer connection.
pub const RESUME_RATE: Rate = Rate::one_every(10, 5);
/// Pool searches one session may make (`join` with new preferences, `next`): a burst
/// of 20, then 4 a second. A search beyond it waits for the budget (the client is
/// already told `queued`), so a person skipping fast waits a little longer, and a
/// script that re-joins in a loop costs no more searches than this.
pub const JOIN_RATE: Rate = Rate::per_second(4, 20);
/// Bytes of missed chat kept for a session whose socket is down (the oldest lines go
/// first): 50 lines of up to 2,000 characters could otherwise hold ~600 KB.
pub const MISSED_CHAT_BYTES: usize = 64 * 1024;
/// Avoid entries one session keeps (blocks and cooldowns); the one ending first goes.
pub const AVOID_LIMIT: usize = 256;

/// What the hub core needs to know.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// How long a dropped session keeps its place or match for a resume.
    pub grace: Duration,
    /// How long a ticket with interests holds out for a partner sharing one.
    pub interest_fallback: Duration,
    /// How long two sessions whose match ended by `next` are kept apart.
    pub rematch_cooldown: Duration,
    /// What a session's inbox holds for it.
    pub inbox: InboxLimits,
    /// ICE servers handed out in `welcome` and `matched`.
    pub ice: IceConfig,
    /// `online` counts are pushed at most this often (and only when they change).
    pub online_interval: Duration,
    /// Most sessions one address may hold, live or within their grace period. A new
    /// session beyond it ends that address's longest-absent one, so connecting and
    /// dropping in a loop cannot pile up sessions (or inflate the online count).
    pub max_sessions_per_ip: usize,
    /// Avoid entries kept per session.
    pub avoid_limit: usize,
    /// Client messages per session (PROTOCOL.md's 50/s, burst 100 by default).
    pub message_rate: Rate,
    /// Resumes per session; one beyond it is refused with close 1008.
    pub resume_rate: Rate,
    /// See [`JOIN_RATE`].
    pub join_rate: Rate,
    /// See [`READY_TIMEOUT`].
    pub ready_timeout: Duration,
    /// How long a report counts against the reported address.
    pub report_window: Duration,
    /// Reports from this many distinct addresses (IPv6: /64s) within the window ban
    /// the reported address.
    pub report_threshold: u32,
    /// Frame sampling for moderation, announced in `welcome`; `None`: no moderation.
    /// With `gate` on, a video user is paired only after a frame of their own camera
    /// passed.
    pub moderation: Option<protocol::Moderation>,
    /// Hand every change of a session's state to the directory (a cluster's, so
    /// another node can resume the session); off on a single node.
    pub snapshots: bool,
}

impl Default for HubConfig {
    /// The server's defaults.
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(15),
            interest_fallback: Duration::from_secs(5),
            rematch_cooldown: Duration::from_secs(60),
            inbox: InboxLimits {
                signals: 64,
                signal_bytes: 256 * 1024,
                missed_chat: MISSED_CHAT_LIMIT,
                missed_chat_bytes: MISSED_CHAT_BYTES,
            },
            ice: IceConfig::default(),
            online_interval: Duration::from_secs(1),
            max_sessions_per_ip: 40,
            avoid_limit: AVOID_LIMIT,
            message_rate: Rate::per_second(protocol::limits::RATE_PER_SECOND, protocol::limits::RATE_BURST),
            resume_rate: RESUME_RATE,
            join_rate: JOIN_RATE,
            ready_timeout: READY_TIMEOUT,
            report_window: Duration::from_secs(600),
            report_threshold: 3,
            moderation: None,
            snapshots: false,
        }
    }
}
