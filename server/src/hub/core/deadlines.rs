//! Per-side deadlines: `ready` in time, and TURN credentials refreshed before they
//! expire.

use super::HubCore;
use crate::hub::io::Ended;
use crate::hub::model::{Parting, Side, State};
use crate::hub::timers::Due;
use matcher::Millis;
use protocol::{ErrorCode, IceServer, LeftReason, ServerMsg, SessionId};

impl HubCore {
    /// `sid`'s side must say `ready` within the ready timeout (a new match, or a new
    /// negotiation after a resume).
    pub(super) fn await_ready(&mut self, sid: SessionId) {
        let at = self.now + self.config.ready_timeout.as_millis() as Millis;
        self.set_deadline(sid, Due::Ready, Some(at));
    }

    /// `sid` was just handed TURN credentials: refresh them at three quarters of
    /// their lifetime. Nothing to do without TURN.
    pub(super) fn schedule_refresh(&mut self, sid: SessionId) {
        if !self.config.ice.has_turn() {
            return;
        }
        let at = self.now + (self.config.ice.ttl.as_millis() as Millis) * 3 / 4;
        self.set_deadline(sid, Due::IceRefresh, Some(at));
    }

    /// ICE servers with fresh TURN credentials for `sid`, or `None` without TURN.
    pub(super) fn fresh_turn(&self, sid: SessionId) -> Option<Vec<IceServer>> {
        self.config.ice.has_turn().then(|| self.config.ice.servers_at(sid, self.unix_now()))
    }

    /// Moves the deadline `due` of `sid`'s side of its match (`Ready`, `IceRefresh`).
    pub(super) fn set_deadline(&mut self, sid: SessionId, due: Due, at: Option<Millis>) {
        let Some(side) = self.sessions.get_mut(sid).and_then(|s| s.current_match_mut()) else {
            return;
        };
        let slot = match due {
            Due::Ready => &mut side.ready_by,
            Due::IceRefresh => &mut side.refresh_at,
            Due::Search => unreachable!("a session's search is not a side's deadline"),
        };
        let old = std::mem::replace(slot, at);
        self.timers.reset(sid, due, old, at);
    }

    /// `sid`'s side `side` ended: its deadlines go with it.
    pub(super) fn forget_deadlines(&mut self, sid: SessionId, side: &Side) {
        self.timers.reset(sid, Due::Ready, side.ready_by, None);
        self.timers.reset(sid, Due::IceRefresh, side.refresh_at, None);
    }

    /// Handles every deadline due by now.
    pub(super) fn fire_deadlines(&mut self) {
        while let Some((sid, due)) = self.timers.pop_due(self.now) {
            let Some(session) = self.sessions.get_mut(sid) else { continue };
            let live = session.conn.is_some();
            if due == Due::Search {
                session.search_at = None;
                // Only for a session still waiting here (away: `restore` submits).
                if let State::Queued { since } = session.state
                    && live
                {
                    self.search(sid, since);
                }
                continue;
            }
            let Some(side) = session.current_match_mut() else { continue };
            match due {
                Due::Ready => {
                    side.ready_by = None;
                    // Away: the grace period decides; a resume starts a new deadline.
                    if live {
                        let id = side.id;
                        self.error(
                            sid,
                            ErrorCode::NotAllowed,
                            "no ready in time for this match: it has ended",
                            Some(id),
                        );
                        self.end_match_as(sid, LeftReason::Disconnected, Parting::Free, Ended::NotReady);
                        self.send(sid, &ServerMsg::PeerLeft { match_id: id, reason: LeftReason::Disconnected });
                    }
                }
                Due::Search => unreachable!("handled above"),
                Due::IceRefresh => {
                    side.refresh_at = None;
                    let id = side.id;
                    // Away: `restore` sends fresh servers on return.
                    if live && let Some(ice_servers) = self.fresh_turn(sid) {
                        self.send(sid, &ServerMsg::IceServers { match_id: id, ice_servers });
                        self.schedule_refresh(sid);
                    }
                }
            }
        }
    }
}
