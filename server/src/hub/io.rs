//! What goes into the hub core and what comes out of it.

use super::backend::{Event, Request};
use super::model::{ConnId, Frame, RelayKind};
use matcher::Millis;
use protocol::{
    ClientMsg, ErrorCode, FrameOf, MatchId, Mode, Preferences, ReportReason, ResumeToken, ServerMsg, SessionId,
};
use std::net::IpAddr;

/// One thing that happened, for [`super::HubCore::handle`].
#[derive(Debug)]
pub enum Input {
    /// A socket opened (its `welcome` follows once the directory has answered).
    /// `country` is its address's country, when the IP database knows it.
    Connect { conn: ConnId, ip: IpAddr, country: Option<String>, resume: Option<ResumeToken> },
    /// A validated message that changes the sender's state.
    Command { conn: ConnId, cmd: Command },
    /// A per-match message, already serialized as the frame the peer receives.
    Relay { conn: ConnId, match_id: MatchId, kind: RelayKind, frame: Frame, generation: Option<u32> },
    /// A socket closed.
    Disconnect { conn: ConnId },
    /// Tell every socket to reconnect (close 1012), for a graceful restart.
    Drain,
    /// The rest of the cluster's sessions (from the other nodes' heartbeats): the
    /// online counts add them to this node's own.
    OtherNodes(protocol::OnlineCounts),
    /// A sampled video frame sent by `session` was classified: its own camera's
    /// (`FrameOf::Own`), or its view of the stranger of `match_id`.
    Verdict { session: SessionId, of: FrameOf, match_id: Option<MatchId>, flagged: bool },
    /// The time asked for by [`super::HubCore::poll_timeout`] has come.
    Timer,
    /// An answer from the backend.
    Backend(Event),
}

/// Client messages other than the relayed ones.
#[derive(Debug)]
pub enum Command {
    /// `hello` after the first message: refused (the socket layer reads the first).
    Hello,
    Join(Preferences),
    Ready {
        match_id: MatchId,
    },
    Next,
    Stop,
    Report {
        match_id: MatchId,
        reason: ReportReason,
    },
    Block {
        match_id: MatchId,
    },
}

impl Input {
    /// The input for a decoded client message. Relayed messages are serialized here,
    /// once, in the form the peer receives.
    pub fn from_client(conn: ConnId, msg: ClientMsg) -> Self {
        let relay = |match_id, kind, msg: ServerMsg, generation| Input::Relay {
            conn,
            match_id,
            kind,
            frame: msg.to_json().into(),
            generation,
        };
        let cmd = match msg {
            ClientMsg::Signal { match_id, payload, generation } => {
                let msg = ServerMsg::Signal { match_id, payload, generation };
                return relay(match_id, RelayKind::Signal, msg, generation);
            }
            ClientMsg::Chat { match_id, text } => {
                return relay(match_id, RelayKind::Chat, ServerMsg::Chat { match_id, text }, None);
            }
            ClientMsg::Typing { match_id, typing } => {
                return relay(match_id, RelayKind::Typing, ServerMsg::Typing { match_id, typing }, None);
            }
            ClientMsg::Hello { .. } => Command::Hello,
            ClientMsg::Join(prefs) => Command::Join(prefs),
            ClientMsg::Ready { match_id } => Command::Ready { match_id },
            ClientMsg::Next => Command::Next,
            ClientMsg::Stop => Command::Stop,
            ClientMsg::Report { match_id, reason } => Command::Report { match_id, reason },
            ClientMsg::Block { match_id } => Command::Block { match_id },
        };
        Input::Command { conn, cmd }
    }
}

/// One thing the core wants done, from [`super::HubCore::poll_output`].
#[derive(Debug)]
pub enum Output {
    /// Queue a frame on a socket.
    Send { conn: ConnId, frame: Frame },
    /// Close a socket with this code once what is queued has gone out.
    Close { conn: ConnId, code: u16, reason: &'static str },
    /// Count something.
    Metric(Metric),
    /// Ask the backend something; its answer comes back as [`Input::Backend`].
    Backend(Request),
}

/// Something worth counting. The shell maps these onto Prometheus metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    MatchStarted(Mode),
    MatchEnded(Ended),
    /// A relayed message was sent on at once (`buffered: false`) or held for later.
    Relayed {
        kind: RelayKind,
        buffered: bool,
    },
    Dropped(Dropped),
    ClientError(ErrorCode),
    Report,
    /// How long a session waited before it was matched.
    QueueWait(Millis),
    /// A pool search waited for the session's search budget.
    SearchDeferred,
    /// A session another node held was resumed here.
    Imported,
}

/// Why a match ended, as counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ended {
    Skipped,
    Stopped,
    Disconnected,
    Banned,
    Blocked,
    /// A side did not say `ready` in time.
    NotReady,
}

impl Ended {
    pub const ALL: [Ended; 6] =
        [Ended::Skipped, Ended::Stopped, Ended::Disconnected, Ended::Banned, Ended::Blocked, Ended::NotReady];

    pub const fn as_str(self) -> &'static str {
        match self {
            Ended::Skipped => "skipped",
            Ended::Stopped => "stopped",
            Ended::Disconnected => "disconnected",
            Ended::Banned => "banned",
            Ended::Blocked => "blocked",
            Ended::NotReady => "not_ready",
        }
    }
}

/// Why a message reached nobody.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dropped {
    StaleMatch,
    BufferFull,
    MissedChatFull,
    PeerOffline,
    /// A signal of an earlier negotiation generation.
    StaleSignal,
}

impl Dropped {
    pub const ALL: [Dropped; 5] =
        [Dropped::StaleMatch, Dropped::BufferFull, Dropped::MissedChatFull, Dropped::PeerOffline, Dropped::StaleSignal];

    pub const fn as_str(self) -> &'static str {
        match self {
            Dropped::StaleMatch => "stale_match",
            Dropped::BufferFull => "buffer_full",
            Dropped::MissedChatFull => "missed_chat_full",
            Dropped::PeerOffline => "peer_offline",
            Dropped::StaleSignal => "stale_signal",
        }
    }
}
