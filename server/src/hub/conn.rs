//! The shell's handle on one live socket: a bounded outbox and a kill switch.

use super::model::ConnId;
use axum::extract::ws::Utf8Bytes;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

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
    /// Bytes of frames queued and not yet taken by the writer (shared with it).
    queued: Arc<AtomicUsize>,
    /// Most bytes that may be queued: the count bound alone would let a client that
    /// does not read hold `outbox` × the largest frame.
    max_queued: usize,
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
    /// A handle on the socket whose writer drains `tx` and reports what it took
    /// through `queued` (see [`Conn::taken`]).
    pub fn new(
        id: ConnId,
        ip: IpAddr,
        tx: mpsc::Sender<Outbound>,
        kill: CancellationToken,
        queued: Arc<AtomicUsize>,
        max_queued: usize,
    ) -> Self {
        Self { id, ip, tx, kill, queued, max_queued }
    }

    /// Queues a frame without waiting. A full outbox (in frames or bytes) means the
    /// client is not reading its messages: rather than let memory grow, the socket is
    /// closed.
    pub fn send(&self, frame: Utf8Bytes) -> Result<(), SendError> {
        let len = frame.len();
        if self.queued.fetch_add(len, Ordering::Relaxed) + len > self.max_queued {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            self.kill.cancel();
            return Err(SendError::Full);
        }
        match self.tx.try_send(Outbound::Frame(frame)) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.queued.fetch_sub(len, Ordering::Relaxed);
                match e {
                    mpsc::error::TrySendError::Closed(_) => Err(SendError::Closed),
                    mpsc::error::TrySendError::Full(_) => {
                        self.kill.cancel();
                        Err(SendError::Full)
                    }
                }
            }
        }
    }

    /// The writer took a frame of `len` bytes off the outbox.
    pub fn taken(queued: &AtomicUsize, len: usize) {
        queued.fetch_sub(len, Ordering::Relaxed);
    }

    /// Asks the writer to close the socket with `code` after what is already queued.
    pub fn close(&self, code: u16, reason: &'static str) {
        if self.tx.try_send(Outbound::Close(code, reason)).is_err() {
            // Outbox full or writer gone: stop it outright.
            self.kill.cancel();
        }
    }
}
