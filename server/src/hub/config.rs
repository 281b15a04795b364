//! The hub's policy values, every one named (the server's flags fill them in).

use super::relay::InboxLimits;
use crate::ice::IceConfig;
use std::time::Duration;

/// Chat lines kept for a session whose socket is down, delivered when it resumes.
pub const MISSED_CHAT_LIMIT: usize = 50;
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
}

impl Default for HubConfig {
    /// The server's defaults.
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(15),
            interest_fallback: Duration::from_secs(5),
            rematch_cooldown: Duration::from_secs(60),
            inbox: InboxLimits { signals: 64, signal_bytes: 256 * 1024, missed_chat: MISSED_CHAT_LIMIT },
            ice: IceConfig::default(),
            online_interval: Duration::from_secs(1),
            max_sessions_per_ip: 40,
            avoid_limit: AVOID_LIMIT,
        }
    }
}
