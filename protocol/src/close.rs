//! WebSocket close codes that carry a protocol meaning.

/// The client sent a frame over the size limit (RFC 6455 "message too big").
pub const TOO_LARGE: u16 = 1009;
/// The client kept flooding after `rate_limited` errors, or did not read its messages
/// (RFC 6455 "policy violation").
pub const POLICY: u16 = 1008;
/// The server is restarting or draining: reconnect with `?resume=` (RFC 6455 "service restart").
pub const SERVICE_RESTART: u16 = 1012;
/// Another socket resumed this session; this one is no longer used.
pub const REPLACED: u16 = 4001;
/// The client's address is banned; a `banned` message precedes this close.
pub const BANNED: u16 = 4003;
