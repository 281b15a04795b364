//! The Let'sMeet signaling wire contract, version 1.
//!
//! This crate is the single source of truth for what crosses the `/ws` WebSocket
//! between a browser (or any other client) and the server; `PROTOCOL.md` describes
//! what these types serialize to. It depends on serde (and uuid) only, so it builds
//! for `wasm32-unknown-unknown` (the web client) and natively (server, load generator).
//!
//! Layout:
//! - [`ids`]: newtype identifiers (`SessionId`, `MatchId`, `ResumeToken`).
//! - [`prefs`]: matchmaking preferences and their validation / normalization.
//! - [`messages`]: `ClientMsg` / `ServerMsg` and everything they carry.
//! - [`codec`]: decoding a text frame into a validated `ClientMsg`, with the error
//!   code the server must answer when that fails.
//! - [`close`]: WebSocket close codes with a protocol meaning.
//! - [`sse`]: the fallback transport's framing (server-sent events and POSTs).

pub mod close;
pub mod codec;
pub mod ids;
pub mod messages;
pub mod prefs;
pub mod sse;

pub use codec::DecodeError;
pub use ids::{MatchId, ResumeToken, SessionId};
pub use messages::{
    ClientMsg, ErrorCode, FrameOf, FrameVerdict, IceServer, LeftReason, Moderation, OnlineCounts, ReportReason, Role,
    ServerMsg, SignalPayload,
};
pub use prefs::{Mode, PrefError, Preferences};

/// The protocol version announced in `welcome`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Limits that are part of the contract (server defaults; the server may be configured
/// differently, but clients can rely on these to validate input before sending).
pub mod limits {
    /// Largest accepted WebSocket frame / message, in bytes (bigger closes with 1009).
    pub const MAX_FRAME_BYTES: usize = 64 * 1024;
    /// Longest chat line, in characters (Unicode scalar values).
    pub const MAX_CHAT_CHARS: usize = 2_000;
    /// Most interests in one `join`, after deduplication.
    pub const MAX_INTERESTS: usize = 10;
    /// Longest interest, in characters, after trimming.
    pub const MAX_INTEREST_CHARS: usize = 32;
    /// Sustained client messages per second before `rate_limited`.
    pub const RATE_PER_SECOND: u32 = 50;
    /// Burst allowance on top of the sustained rate.
    pub const RATE_BURST: u32 = 100;
}
