//! The two message enums, one per direction, and what they carry.

use crate::ids::{MatchId, ResumeToken, SessionId};
use crate::prefs::{Mode, Preferences};
use serde::{Deserialize, Serialize};

/// Client → server. One JSON object per text frame, tagged by `"type"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// The first message on a socket opened with `/ws?hello=1` (an extension of
    /// version 1): resume the session of `resume_token`, or start a new one when it is
    /// absent or unknown. It keeps the token out of the URL, where proxies log it.
    Hello {
        #[serde(default)]
        resume_token: Option<String>,
    },
    /// Enter the queue (when idle) or replace the preferences (while queued).
    Join(Preferences),
    /// This client's peer-connection listeners are in place for `match_id`:
    /// deliver the signals buffered for it.
    Ready { match_id: MatchId },
    /// Relay to the current peer of `match_id`.
    Signal {
        match_id: MatchId,
        payload: SignalPayload,
        /// The negotiation this signal belongs to (from `matched` or the latest
        /// `peer_resumed`); a signal of an earlier one is dropped. Absent: the
        /// current one (clients from before this extension).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        generation: Option<u32>,
    },
    /// A chat line to the peer.
    Chat { match_id: MatchId, text: String },
    /// Typing indicator.
    Typing { match_id: MatchId, typing: bool },
    /// End the current match (or stop waiting) and queue again with the last preferences.
    Next,
    /// End the current match or leave the queue; stay connected and idle.
    Stop,
    /// Report the peer of `match_id`.
    Report { match_id: MatchId, reason: ReportReason },
    /// Never pair with the peer of `match_id` again; ends the match without requeueing.
    Block { match_id: MatchId },
}

/// WebRTC negotiation payloads, opaque to the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SignalPayload {
    /// An SDP offer.
    Offer { sdp: String },
    /// An SDP answer.
    Answer { sdp: String },
    /// A trickled ICE candidate.
    Candidate {
        candidate: String,
        #[serde(default)]
        sdp_mid: Option<String>,
        #[serde(default)]
        sdp_m_line_index: Option<u16>,
    },
    /// The sender has gathered all its candidates.
    EndOfCandidates,
}

/// Why a peer is being reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportReason {
    Nudity,
    Harassment,
    Spam,
    Underage,
    Other,
}

/// Server → client. One JSON object per text frame, tagged by `"type"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// First message on every connection.
    Welcome {
        /// Always [`crate::PROTOCOL_VERSION`].
        protocol: u32,
        session_id: SessionId,
        /// Present this in `hello` (or `?resume=`) to get the session back after a
        /// drop. Every `welcome` carries a fresh one; the one before stops working.
        resume_token: ResumeToken,
        /// Whether this connection resumed an earlier session.
        resumed: bool,
        /// STUN servers. TURN credentials come only with `matched` (and
        /// `ice_servers`), so a socket that never joins cannot harvest them.
        ice_servers: Vec<IceServer>,
        online: OnlineCounts,
        /// The server offers a TURN relay (its credentials come with `matched`), so
        /// a relay-only ("hide my IP") connection can work. An addition to version 1.
        #[serde(default)]
        relay: bool,
        /// The country (ISO 3166-1 alpha-2) of this connection's address, when the
        /// server's IP database knows it: "only strangers from my country" then means
        /// this one. Sent to this client only, never to a stranger. Absent when
        /// unknown. An addition to version 1.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        country: Option<String>,
        /// How this client samples video frames for moderation, when the server
        /// moderates (see [`Moderation`]). Absent: send no frames. An addition to
        /// version 1.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        moderation: Option<Moderation>,
    },
    /// Waiting for a partner.
    Queued { mode: Mode },
    /// Paired. The offerer creates the offer after its own `ready`.
    Matched {
        match_id: MatchId,
        role: Role,
        common_interests: Vec<String>,
        peer_country: Option<String>,
        /// Fresh ICE servers (TURN credentials are time-limited); absent when the
        /// ones from `welcome` still apply. An addition to version 1.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ice_servers: Option<Vec<IceServer>>,
        /// The match's negotiation generation: 0 when it starts, one more with every
        /// `peer_resumed` or resume. An addition to version 1.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        generation: Option<u32>,
    },
    /// A signal from the peer.
    Signal {
        match_id: MatchId,
        payload: SignalPayload,
        /// The negotiation it belongs to (always the current one). An addition to version 1.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        generation: Option<u32>,
    },
    /// A chat line from the peer.
    Chat { match_id: MatchId, text: String },
    /// The peer's typing indicator.
    Typing { match_id: MatchId, typing: bool },
    /// The match is over; this session is idle.
    PeerLeft { match_id: MatchId, reason: LeftReason },
    /// The peer's socket dropped; the match is held for the grace period.
    PeerReconnecting { match_id: MatchId },
    /// The peer is back within the grace period.
    PeerResumed {
        match_id: MatchId,
        /// The new negotiation generation: both sides start a new peer connection
        /// and say `ready` again; signals of earlier generations are dropped. An
        /// addition to version 1.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        generation: Option<u32>,
    },
    /// Fresh ICE servers for the running match, sent before the TURN credentials of
    /// the last ones expire: the client applies them and restarts ICE. An addition
    /// to version 1.
    IceServers { match_id: MatchId, ice_servers: Vec<IceServer> },
    /// Sessions connected and sessions in a match.
    Online(OnlineCounts),
    /// The last message was refused; the connection stays open.
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        match_id: Option<MatchId>,
    },
    /// Sent before closing with code 4003.
    Banned {
        reason: String,
        /// RFC 3339 timestamp.
        until: String,
    },
}

/// Which side of the negotiation a client takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Creates the offer (the "impolite" peer of perfect negotiation).
    Offerer,
    /// Answers (the "polite" peer).
    Answerer,
}

impl Role {
    /// The role of the other side.
    pub const fn other(self) -> Role {
        match self {
            Role::Offerer => Role::Answerer,
            Role::Answerer => Role::Offerer,
        }
    }
}

/// Why a match ended, as told to the peer who stayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeftReason {
    /// The peer pressed next (or blocked).
    Skipped,
    /// The peer pressed stop.
    Stopped,
    /// The peer's connection dropped and did not come back within the grace period.
    Disconnected,
    /// The peer was banned.
    Banned,
}

/// A WebRTC `RTCIceServer`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// The online counters shown on the landing page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OnlineCounts {
    /// Sessions that exist (connected, or within their reconnect grace period).
    pub count: u32,
    /// Sessions currently in a match.
    pub chatting: u32,
}

/// Machine-readable reason in an `error` message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, unknown `type`, wrong field type or out-of-range value.
    BadMessage,
    /// A chat line over the length limit.
    TooLarge,
    /// Over the message rate; the message was dropped.
    RateLimited,
    /// A `join` whose preferences fail validation.
    InvalidPreferences,
    /// `next` with nothing to end and no earlier `join` to repeat.
    NotInMatch,
    /// The message named a match that is not the sender's current one.
    StaleMatch,
    /// The message is not allowed in the sender's current state (e.g. `join` while matched).
    NotAllowed,
}

impl ErrorCode {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::InvalidPreferences => "invalid_preferences",
            ErrorCode::NotInMatch => "not_in_match",
            ErrorCode::StaleMatch => "stale_match",
            ErrorCode::NotAllowed => "not_allowed",
        }
    }
}

impl ClientMsg {
    /// The JSON text frame for this message.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("client messages contain only JSON-representable values")
    }

    /// The match this message names, if any.
    pub fn match_id(&self) -> Option<MatchId> {
        match self {
            ClientMsg::Ready { match_id }
            | ClientMsg::Signal { match_id, .. }
            | ClientMsg::Chat { match_id, .. }
            | ClientMsg::Typing { match_id, .. }
            | ClientMsg::Report { match_id, .. }
            | ClientMsg::Block { match_id } => Some(*match_id),
            ClientMsg::Hello { .. } | ClientMsg::Join(_) | ClientMsg::Next | ClientMsg::Stop => None,
        }
    }
}

impl ServerMsg {
    /// The JSON text frame for this message.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server messages contain only JSON-representable values")
    }

    /// Parses a server frame (clients use this).
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// An `error` reply.
    pub fn error(code: ErrorCode, message: impl Into<String>, match_id: Option<MatchId>) -> Self {
        ServerMsg::Error { code, message: message.into(), match_id }
    }
}

/// Frame sampling for moderation, announced in `welcome`. A video client captures a
/// frame of its own camera (and of the stranger's video) at random times, scales the
/// centre square to `size`×`size`, encodes it as JPEG and POSTs it to `path` with its
/// resume token (`Authorization: Bearer …`); `?of=self`, or `?of=peer&match_id=…`.
/// The answer is a [`FrameVerdict`]. Frames are classified and dropped: never stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moderation {
    /// Where frames go (same origin), e.g. `/moderation/frame`.
    pub path: String,
    /// Side of the square JPEG, in pixels.
    pub size: u32,
    /// The first frame of each match (and the one before a video user is first
    /// paired) is taken within this many milliseconds.
    pub first_ms: u32,
    /// Later frames come a random time between these apart, in milliseconds.
    pub every_ms: [u32; 2],
    /// A video user's own first frame is checked before they can be paired: send one
    /// as soon as the camera runs, before or right after `join`.
    pub gate: bool,
}

/// Whose video a sampled frame shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameOf {
    /// The sender's own camera.
    #[serde(rename = "self")]
    Own,
    /// The stranger's incoming video.
    Peer,
}

/// The answer to a sampled frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameVerdict {
    /// The frame broke the rules. For a stranger's frame: blur their video (the user
    /// may choose to show it anyway) and offer to report.
    pub flagged: bool,
    /// The frame was not classified (the server was busy); nothing to do.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
}
