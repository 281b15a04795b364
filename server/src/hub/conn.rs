//! The shell's handle on one live socket: a bounded outbox and a kill switch.

use super::model::ConnId;
use axum::extract::ws::Utf8Bytes;
use futures_util::task::AtomicWaker;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// A one-way switch that ends a socket's task (its client does not read, or its
/// writes failed). Polling it is two atomic operations, where a cancellation token
/// takes a lock: the socket's task checks it around every message.
#[derive(Debug, Default)]
pub struct Kill {
    set: AtomicBool,
    waker: AtomicWaker,
}

impl Kill {
    /// Ends the socket's task.
    pub fn trigger(&self) {
        self.set.store(true, Ordering::Release);
        self.waker.wake();
    }

    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    fn poll_set(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_set() {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        if self.is_set() { Poll::Ready(()) } else { Poll::Pending }
    }

    /// Resolves once triggered.
    pub fn triggered(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| self.poll_set(cx))
    }
}

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
    kill: Arc<Kill>,
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
        kill: Arc<Kill>,
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
            self.kill.trigger();
            return Err(SendError::Full);
        }
        match self.tx.try_send(Outbound::Frame(frame)) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.queued.fetch_sub(len, Ordering::Relaxed);
                match e {
                    mpsc::error::TrySendError::Closed(_) => Err(SendError::Closed),
                    mpsc::error::TrySendError::Full(_) => {
                        self.kill.trigger();
                        Err(SendError::Full)
                    }
                }
            }
        }
    }

    /// Nothing is queued: a frame handed to the socket's task directly goes out in
    /// order.
    pub fn is_idle(&self) -> bool {
        self.queued.load(Ordering::Relaxed) == 0 && self.tx.capacity() == self.tx.max_capacity()
    }

    /// The writer took a frame of `len` bytes off the outbox.
    pub fn taken(queued: &AtomicUsize, len: usize) {
        queued.fetch_sub(len, Ordering::Relaxed);
    }

    /// Asks the writer to close the socket with `code` after what is already queued.
    pub fn close(&self, code: u16, reason: &'static str) {
        if self.tx.try_send(Outbound::Close(code, reason)).is_err() {
            // Outbox full or writer gone: stop it outright.
            self.kill.trigger();
        }
    }
}
