//! The hub's handle on one live WebSocket: a bounded outbox and a kill switch.

use axum::extract::ws::Utf8Bytes;
use std::net::IpAddr;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Identifies one socket (a session may have several over its life, one at a time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// What a socket's writer task sends.
#[derive(Debug)]
pub enum Outbound {
    /// A serialized server message.
    Frame(Utf8Bytes),
    /// Close the socket with this code and reason, then stop.
    Close(u16, &'static str),
}

/// A cheap, cloneable handle to a live socket.
#[derive(Clone, Debug)]
pub struct Conn {
    pub id: ConnId,
    pub ip: IpAddr,
    tx: mpsc::Sender<Outbound>,
    kill: CancellationToken,
}

/// Why a frame could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// The socket is gone.
    Closed,
    /// The outbox is full: the client does not read. The socket is being closed.
    Full,
}

impl Conn {
    pub fn new(id: ConnId, ip: IpAddr, tx: mpsc::Sender<Outbound>, kill: CancellationToken) -> Self {
        Self { id, ip, tx, kill }
    }

    /// Queues a frame without waiting. A full outbox means the client is not reading
    /// its messages: rather than let memory grow, the socket is closed.
    pub fn send(&self, frame: Utf8Bytes) -> Result<(), SendError> {
        match self.tx.try_send(Outbound::Frame(frame)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::Closed),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.kill.cancel();
                Err(SendError::Full)
            }
        }
    }

    /// Asks the writer to close the socket with `code` after what is already queued.
    pub fn close(&self, code: u16, reason: &'static str) {
        if self.tx.try_send(Outbound::Close(code, reason)).is_err() {
            // Outbox full or writer gone: stop it outright.
            self.kill.cancel();
        }
    }
}
