//! Decoding client frames into validated messages.
//!
//! [`decode_client`] is the one entry point the server uses: it parses, then checks
//! every value limit, and on failure says which `error` code the sender gets
//! (PROTOCOL.md rule 3). It never panics, whatever the input.

use crate::ids::MatchId;
use crate::limits::MAX_CHAT_CHARS;
use crate::messages::{ClientMsg, ErrorCode, ServerMsg};

/// Why a client frame was refused, and what to answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// The `error` code for the reply.
    pub code: ErrorCode,
    /// A short human-readable explanation (lowercase, no trailing period).
    pub message: String,
    /// The match the refused message named, when it could be read.
    pub match_id: Option<MatchId>,
}

impl DecodeError {
    fn new(code: ErrorCode, message: impl Into<String>, match_id: Option<MatchId>) -> Self {
        Self { code, message: message.into(), match_id }
    }

    /// The `error` message to send back.
    pub fn to_server_msg(&self) -> ServerMsg {
        ServerMsg::error(self.code, self.message.clone(), self.match_id)
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for DecodeError {}

/// Longest explanation echoed back for a parse error (serde quotes parts of the input).
const MAX_ERROR_MESSAGE: usize = 160;

/// Parses and validates one client text frame.
///
/// `join` preferences come back normalized (see [`crate::Preferences::normalize`]).
pub fn decode_client(text: &str) -> Result<ClientMsg, DecodeError> {
    let msg: ClientMsg = serde_json::from_str(text).map_err(|e| {
        let mut message = e.to_string();
        if message.len() > MAX_ERROR_MESSAGE {
            let mut cut = MAX_ERROR_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        DecodeError::new(ErrorCode::BadMessage, message, None)
    })?;
    validate(msg)
}

fn validate(msg: ClientMsg) -> Result<ClientMsg, DecodeError> {
    match msg {
        ClientMsg::Join(prefs) => prefs
            .normalize()
            .map(ClientMsg::Join)
            .map_err(|e| DecodeError::new(ErrorCode::InvalidPreferences, e.to_string(), None)),
        ClientMsg::Chat { match_id, text } => {
            // Byte length bounds the character count from above: skip counting when short.
            if text.len() > MAX_CHAT_CHARS && text.chars().count() > MAX_CHAT_CHARS {
                Err(DecodeError::new(
                    ErrorCode::TooLarge,
                    format!("chat text is longer than {MAX_CHAT_CHARS} characters"),
                    Some(match_id),
                ))
            } else {
                Ok(ClientMsg::Chat { match_id, text })
            }
        }
        other => Ok(other),
    }
}
