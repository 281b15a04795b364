//! Envelopes between sessions: relayed messages into the receiver's inbox, and what
//! one side of a match tells the other.

use super::HubCore;
use crate::hub::io::{Dropped, Metric, Output};
use crate::hub::matches;
use crate::hub::model::{Body, Envelope, Frame, RelayKind};
use crate::hub::relay::Accepted;
use protocol::{ErrorCode, MatchId, ServerMsg, SessionId};

impl HubCore {
    /// A per-match message from `sid`: addressed to its peer, wherever it lives.
    /// `generation`: the one the client named (signals), if it did.
    pub(super) fn relay(
        &mut self,
        sid: SessionId,
        match_id: MatchId,
        kind: RelayKind,
        frame: Frame,
        generation: Option<u32>,
    ) {
        let session = self.sessions.get(sid).expect("relays come from sessions of this node");
        let Some(side) = session.side(match_id) else {
            self.metric(Metric::Dropped(Dropped::StaleMatch));
            return self.error(sid, ErrorCode::StaleMatch, "that match is not your current one", Some(match_id));
        };
        let (peer, current) = (side.peer, side.generation);
        // From a peer connection this client has replaced since: nobody may act on it.
        if generation.is_some_and(|g| g != current) {
            return self.metric(Metric::Dropped(Dropped::StaleSignal));
        }
        self.forward(peer, sid, match_id, Body::Relay { kind, frame, generation: current });
    }

    /// An envelope for `to`, a session of this node.
    pub(super) fn deliver(&mut self, to: SessionId, env: Envelope) {
        let Envelope { from, match_id, body } = env;
        let Some(session) = self.sessions.get_mut(to) else {
            return; // ended meanwhile
        };
        match body {
            Body::Started(started) => return self.start_side(to, from, match_id, *started),
            Body::Block => return self.avoid_forever(to, from),
            _ => {}
        }
        // Everything else is about a match: once it is over here, it is stale.
        if session.side(match_id).is_none_or(|s| s.peer != from) {
            return;
        }
        match body {
            Body::Relay { kind: RelayKind::Signal, generation, .. }
                if session.side(match_id).is_some_and(|s| s.generation != generation) =>
            {
                // Sent for a negotiation that a resume on either side has replaced.
                self.metric(Metric::Dropped(Dropped::StaleSignal));
            }
            Body::Relay { kind, frame, .. } => self.receive(to, from, match_id, kind, frame),
            Body::BufferFull => {
                self.metric(Metric::Dropped(Dropped::BufferFull));
                self.error(
                    to,
                    ErrorCode::RateLimited,
                    "too many signals are waiting for your peer to get ready; this one was dropped",
                    Some(match_id),
                );
            }
            Body::Left { reason, parting } => {
                let limit = self.config.avoid_limit;
                if let Some(side) = matches::end_side(session, parting, limit) {
                    self.forget_deadlines(to, &side);
                }
                self.chatting -= 1;
                if !self.send(to, &ServerMsg::PeerLeft { match_id, reason }) {
                    // Away within its grace period: tell it when it comes back.
                    let session = self.sessions.get_mut(to).expect("checked above");
                    session.missed_left = Some((match_id, reason));
                }
            }
            Body::Away => {
                self.send(to, &ServerMsg::PeerReconnecting { match_id });
            }
            Body::Back { generation } => {
                // The peer starts a new peer connection: so does this side, and both
                // say `ready` again; what was held for the old one is stale.
                let side = session.current_match_mut().expect("checked above");
                side.generation = side.generation.max(generation);
                let generation = side.generation;
                session.inbox.renegotiate();
                self.await_ready(to);
                self.send(to, &ServerMsg::PeerResumed { match_id, generation: Some(generation) });
            }
            Body::Started(_) | Body::Block => unreachable!("handled above"),
        }
    }

    /// A relayed message reaches `to`'s inbox, which sends it on or holds it.
    pub(super) fn receive(&mut self, to: SessionId, from: SessionId, match_id: MatchId, kind: RelayKind, frame: Frame) {
        let limits = self.config.inbox;
        let session = self.sessions.get_mut(to).expect("delivering to a session of this node");
        let conn = session.conn;
        match session.inbox.accept(kind, frame, conn.is_some(), limits) {
            Accepted::Now(frame) => {
                let conn = conn.expect("sent at once only to a live socket");
                self.out.push_back(Output::Send { conn, frame });
                self.metric(Metric::Relayed { kind, buffered: false });
            }
            Accepted::Held => self.metric(Metric::Relayed { kind, buffered: true }),
            Accepted::HeldDroppingOldest => {
                self.metric(Metric::Dropped(Dropped::MissedChatFull));
                self.metric(Metric::Relayed { kind, buffered: true });
            }
            Accepted::Full => self.forward(from, to, match_id, Body::BufferFull),
            Accepted::Dropped(why) => self.metric(Metric::Dropped(why)),
        }
    }
}
