//! Moderation rules: reports, classified frames, the video gate, and bans.
//!
//! - A flagged frame of a user's **own** camera bans their address.
//! - A flagged frame of **the stranger's** video, as one viewer saw it, is a strong
//!   report: it bans only when a second, independent source agrees (another
//!   viewer's flag; the stranger's own flagged frame bans by itself).
//! - Reports from [`HubConfig::report_threshold`] distinct addresses within the
//!   window ban (for longer each time: the ban set keeps the strikes).
//! - With the video gate on, a video user's ticket waits until a frame of their own
//!   camera has passed, so nobody is paired with a camera that was never checked.
//!
//! Bans are asked of the backend ([`Request::Ban`]); each one issued, here or
//! anywhere in the cluster, comes back as [`Event::Banned`](crate::hub::backend::Event)
//! and ends every session of its address: `banned`, close 4003, and `peer_left{banned}`
//! for its stranger.
//!
//! [`HubConfig::report_threshold`]: crate::hub::HubConfig::report_threshold

use super::HubCore;
use crate::bans::{Ban, BanKind, BanOrder, Mark};
use crate::hub::backend::Request;
use crate::hub::io::Metric;
use crate::hub::matches;
use crate::hub::model::{Parting, State};
use crate::hub::moderation::Tally;
use crate::limits::client_key;
use protocol::{FrameOf, LeftReason, MatchId, Mode, ReportReason, ServerMsg, SessionId, close};
use std::net::IpAddr;

/// Viewers whose flags on one address's video ban it.
pub const FLAGGERS_TO_BAN: u32 = 2;

impl HubCore {
    pub(super) fn report(&mut self, sid: SessionId, match_id: MatchId, reason: ReportReason) {
        let Some(named) = self.named(sid, match_id) else {
            return;
        };
        let now = self.now;
        let session = self.sessions.get_mut(sid).expect("named found the session");
        if let Some(tally) = self.moderation.report(session, match_id, named.peer_ip, now) {
            let by = session.ip;
            self.metric(Metric::Report);
            tracing::info!(reporter = %sid, reported = %named.peer, ?reason, reporters = tally.reporters, "report");
            // The ban first: other nodes then hold it when the mark reaches them.
            self.judge(named.peer_ip, tally);
            self.request(Request::Mark(Mark { by, against: named.peer_ip, flag: false }));
        }
    }

    /// Whether `sid`'s ticket must wait for a clean frame of its own camera.
    pub(super) fn gated(&self, sid: SessionId) -> bool {
        let gate = self.config.moderation.as_ref().is_some_and(|m| m.gate);
        gate && self
            .sessions
            .get(sid)
            .is_some_and(|s| !s.cleared && s.prefs.as_ref().is_some_and(|p| p.mode == Mode::Video))
    }

    /// A frame `sid` sent was classified.
    pub(super) fn verdict(&mut self, sid: SessionId, of: FrameOf, match_id: Option<MatchId>, flagged: bool) {
        let Some(session) = self.sessions.get_mut(sid) else { return };
        match (of, flagged) {
            (FrameOf::Own, true) => {
                let ip = session.ip;
                tracing::info!(session = %sid, "own camera flagged");
                self.ban(ip, BanKind::Model, "nudity on camera");
            }
            (FrameOf::Own, false) => {
                let was_gated = !session.cleared;
                session.cleared = true;
                if let State::Queued { since } = session.state
                    && was_gated
                    && session.conn.is_some()
                    && session.search_at.is_none()
                {
                    self.touch(sid);
                    self.submit(sid, since);
                }
            }
            (FrameOf::Peer, true) => {
                let viewer_ip = session.ip;
                let Some(named) = match_id.and_then(|id| matches::named(session, id)) else { return };
                let tally = self.moderation.flag(viewer_ip, named.peer_ip, self.now);
                tracing::info!(viewer = %sid, flagged = %named.peer, flaggers = tally.flaggers, "stranger's video flagged");
                self.judge(named.peer_ip, tally);
                self.request(Request::Mark(Mark { by: viewer_ip, against: named.peer_ip, flag: true }));
            }
            (FrameOf::Peer, false) => {}
        }
    }

    /// Evidence another node counted: counted here too, and judged here too. Two
    /// nodes counting marks at the same moment each miss the other's, and only
    /// judging learnt marks lets either of them ban then. A ban the other node issued
    /// meanwhile is not issued again ([`crate::bans::Bans::issue`]).
    pub(super) fn learn(&mut self, mark: Mark) {
        let tally = self.moderation.mark(mark.by, mark.against, mark.flag, self.now);
        self.judge(mark.against, tally);
    }

    /// Bans `ip` if the evidence against it is enough.
    fn judge(&mut self, ip: IpAddr, tally: Tally) {
        if tally.flaggers >= FLAGGERS_TO_BAN {
            self.ban(ip, BanKind::Model, "nudity, seen by other users");
        } else if tally.reporters >= self.config.report_threshold {
            self.ban(ip, BanKind::Reports, "reported by other users");
        }
    }

    fn ban(&mut self, ip: IpAddr, kind: BanKind, reason: &str) {
        self.moderation.clear(ip);
        self.request(Request::Ban(BanOrder { ip, kind, reason: reason.into(), duration: None }));
    }

    /// A ban was issued: every session of its address goes, for good.
    pub(super) fn banned(&mut self, ban: Ban) {
        self.moderation.clear(ban.key);
        let hit: Vec<SessionId> =
            self.sessions.iter_with_ids().filter(|(_, s)| client_key(s.ip) == ban.key).map(|(sid, _)| sid).collect();
        if hit.is_empty() {
            return;
        }
        let msg = ServerMsg::Banned { reason: ban.reason.clone(), until: ban.until_rfc3339() };
        tracing::info!(address = %ban.block(), kind = ban.kind.as_str(), sessions = hit.len(), "banned");
        for sid in hit {
            self.end_match(sid, LeftReason::Banned, Parting::Free);
            let Some(session) = self.sessions.remove(sid) else { continue };
            if matches!(session.state, State::Queued { .. }) {
                self.request(Request::Withdraw { session: sid });
            }
            self.timers.reset(sid, crate::hub::timers::Due::Search, session.search_at, None);
            self.request(Request::Unregister { session: sid });
            if let Some(conn) = session.conn {
                self.out.push_back(crate::hub::io::Output::Send { conn, frame: msg.to_json().into() });
                self.out.push_back(crate::hub::io::Output::Close { conn, code: close::BANNED, reason: "banned" });
            }
        }
    }
}
