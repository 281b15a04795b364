//! The hub's plain data: a session, its side of a match, its inbox, and how a match
//! ended. No behaviour beyond small accessors lives here; the rooms next to this file
//! (sessions, matches, relay, moderation) own the rules.

use super::budget::Budget;
use axum::extract::ws::Utf8Bytes;
use matcher::{Avoid, Millis};
use protocol::{LeftReason, MatchId, Preferences, ResumeToken, Role, SessionId};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::net::IpAddr;

/// A serialized server message, shared (not copied) by every socket it goes to.
pub type Frame = Utf8Bytes;

/// Identifies one socket (a session may have several over its life, one at a time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Where a session is.
#[derive(Debug)]
pub enum State {
    Idle,
    /// Waiting since this time (kept across reconnects and preference changes).
    Queued {
        since: Millis,
    },
    Matched(Box<Side>),
}

/// One session's side of a match: what it knows of its peer.
#[derive(Debug)]
pub struct Side {
    pub id: MatchId,
    pub peer: SessionId,
    /// The peer's address when the match began (reports count against it).
    pub peer_ip: IpAddr,
    pub role: Role,
    pub common_interests: Vec<String>,
    pub peer_country: Option<String>,
    /// The negotiation generation: 0 at the start, raised by every resume of either
    /// side. Signals of an earlier generation are stale and dropped.
    pub generation: u32,
    /// This side must say `ready` by then (it has not yet, for this generation).
    pub ready_by: Option<Millis>,
    /// When this side's TURN credentials get refreshed.
    pub refresh_at: Option<Millis>,
}

/// What is held for a session in its current match, owned by the receiving session:
/// whoever owns the session decides whether a message goes out at once or waits.
#[derive(Debug, Default)]
pub struct Inbox {
    /// The client has sent `ready` for the current match (since its current socket).
    pub ready: bool,
    /// Signals held until `ready`.
    pub pending: VecDeque<Frame>,
    /// Bytes in `pending`.
    pub pending_bytes: usize,
    /// Chat lines that arrived while the socket was down.
    pub missed_chat: VecDeque<Frame>,
    /// Bytes in `missed_chat`.
    pub missed_chat_bytes: usize,
}

/// The match a session was in last, for `report` / `block` after it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PastMatch {
    pub id: MatchId,
    pub peer: SessionId,
    pub peer_ip: IpAddr,
}

/// What ending a match means for whether the two may meet again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Parting {
    /// They may be paired again at once (`stop`, a lapsed grace period).
    Free,
    /// Kept apart until this time (`next`: protocol rule 5).
    Cooldown(Millis),
    /// Never paired again for the life of both sessions (`block`).
    Block,
}

impl Parting {
    /// The avoid entry's end: `None` for forever, `Some(t)` until `t`; no entry when free.
    pub fn avoid_until(self) -> Option<Option<Millis>> {
        match self {
            Parting::Free => None,
            Parting::Cooldown(t) => Some(Some(t)),
            Parting::Block => Some(None),
        }
    }
}

/// One browser tab's session.
#[derive(Debug)]
pub struct Session {
    pub token: ResumeToken,
    /// The live socket; `None` while within the grace period.
    pub conn: Option<ConnId>,
    /// Address of the last socket.
    pub ip: IpAddr,
    /// The country of that address, when the IP database knows it. It overrides the
    /// country in the preferences for matching, and is never told to a stranger
    /// unless both insisted on meeting their own country.
    pub country: Option<String>,
    /// When the grace period ends, while the socket is down.
    pub grace_until: Option<Millis>,
    /// The last accepted preferences (`next` reuses them).
    pub prefs: Option<Preferences>,
    pub state: State,
    pub inbox: Inbox,
    /// Sessions not to be paired with: cooldowns after `next`, blocks forever.
    pub avoid: Vec<Avoid>,
    pub last_match: Option<PastMatch>,
    /// Matches this session has reported (at most its current and last): one report
    /// per match counts, however often it is sent.
    pub reported: Vec<MatchId>,
    /// A `peer_left` that could not be delivered because the socket was down; sent
    /// when the session resumes.
    pub missed_left: Option<(MatchId, LeftReason)>,
    /// Client messages: spent by every command and relay, whichever socket carries
    /// them, so reconnecting does not buy a fresh burst.
    pub budget: Budget,
    /// Resumes: each one restarts the peer's video, so they are rationed too.
    pub resumes: Budget,
    /// Searches of the pool (`join` with new preferences, `next`).
    pub joins: Budget,
    /// A search deferred until the budget allows it, due then.
    pub search_at: Option<Millis>,
    /// Sampled frames for moderation.
    pub frames: Budget,
    /// A frame of its own camera passed moderation: with the video gate on, its
    /// ticket waits for this.
    pub cleared: bool,
}

impl Session {
    /// A fresh idle session on socket `conn`.
    pub fn new(token: ResumeToken, conn: ConnId, ip: IpAddr) -> Self {
        Self {
            token,
            conn: Some(conn),
            ip,
            country: None,
            grace_until: None,
            prefs: None,
            state: State::Idle,
            inbox: Inbox::default(),
            avoid: Vec::new(),
            last_match: None,
            reported: Vec::new(),
            missed_left: None,
            budget: Budget::default(),
            resumes: Budget::default(),
            joins: Budget::default(),
            search_at: None,
            frames: Budget::default(),
            cleared: false,
        }
    }

    /// This session's side of `match_id`, if that is its current match.
    pub fn side(&self, match_id: MatchId) -> Option<&Side> {
        match &self.state {
            State::Matched(side) if side.id == match_id => Some(side),
            _ => None,
        }
    }

    /// Its current match, if any.
    pub fn current_match(&self) -> Option<&Side> {
        match &self.state {
            State::Matched(side) => Some(side),
            _ => None,
        }
    }

    pub fn current_match_mut(&mut self) -> Option<&mut Side> {
        match &mut self.state {
            State::Matched(side) => Some(side),
            _ => None,
        }
    }
}

/// Per-match messages relayed to the peer, serialized once by the sender's socket task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RelayKind {
    /// Held until the receiver's `ready`.
    Signal,
    /// Delivered at once (kept briefly while the receiver is reconnecting).
    Chat,
    /// Delivered at once, or dropped.
    Typing,
}

impl RelayKind {
    /// Metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            RelayKind::Signal => "signal",
            RelayKind::Chat => "chat",
            RelayKind::Typing => "typing",
        }
    }
}

/// A message from one session to another about their match, delivered to the
/// receiving session wherever it lives (the bus). Each session changes only its own
/// state; what its peer must do travels as an envelope (serialized between nodes;
/// times in it are the sending node's, see [`Envelope::shift_times`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub from: SessionId,
    pub match_id: MatchId,
    pub body: Body,
}

/// What an [`Envelope`] says.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Body {
    /// You are matched with `from` (sent by the side that took the pair).
    Started(Box<Started>),
    /// A signal, chat line or typing indicator from your peer.
    /// A message from the peer's client; signals carry the sender's generation.
    Relay {
        kind: RelayKind,
        #[serde(with = "frame_text")]
        frame: Frame,
        generation: u32,
    },
    /// Your signal was dropped: the peer holds as many as it may before its `ready`.
    BufferFull,
    /// Your peer ended the match.
    Left { reason: LeftReason, parting: Parting },
    /// Your peer's socket dropped; the match is held for its grace period.
    Away,
    /// Your peer is back (or replaced its socket) and negotiates again.
    Back { generation: u32 },
    /// Your peer blocked you after the match ended: never pair the two again.
    Block,
}

/// The receiving side's view of a new match.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Started {
    pub role: Role,
    pub common_interests: Vec<String>,
    pub peer_country: Option<String>,
    pub peer_ip: IpAddr,
}

impl Envelope {
    /// Moves the times the envelope carries by `delta` milliseconds (saturating): onto
    /// a shared scale (Unix ms) before it leaves a node, and back onto the receiving
    /// node's clock when it arrives.
    pub fn shift_times(&mut self, delta: i64) {
        if let Body::Left { parting: Parting::Cooldown(until), .. } = &mut self.body {
            *until = until.saturating_add_signed(delta);
        }
    }
}

/// A [`Frame`] as a JSON string.
mod frame_text {
    use super::Frame;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(frame: &Frame, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(frame.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Frame, D::Error> {
        String::deserialize(d).map(Frame::from)
    }
}
