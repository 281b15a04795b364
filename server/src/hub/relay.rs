//! Relay at the receiving end: a session's [`Inbox`] decides whether a message from
//! its peer goes out at once, waits, or is dropped (protocol rule 2). The sender's side
//! only addresses the message to a session; this is the only place that buffers.

use super::io::Dropped;
use super::model::{Frame, Inbox, RelayKind};
use std::collections::VecDeque;

/// Bounds on what an inbox holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InboxLimits {
    /// Signals held until `ready` (count).
    pub signals: usize,
    /// Signals held until `ready` (bytes).
    pub signal_bytes: usize,
    /// Chat lines kept while the socket is down; the oldest go first.
    pub missed_chat: usize,
    /// Bytes of those lines; the oldest go first.
    pub missed_chat_bytes: usize,
}

/// What became of a message handed to an inbox.
#[derive(Debug, PartialEq, Eq)]
pub enum Accepted {
    /// Send it on the receiver's socket now.
    Now(Frame),
    /// Held for later (`ready`, or the socket's return).
    Held,
    /// Held, and the oldest missed chat line was dropped to make room.
    HeldDroppingOldest,
    /// Refused: the signal buffer is full. The sender is told.
    Full,
    /// Dropped without telling anyone.
    Dropped(Dropped),
}

impl Inbox {
    /// Takes a message from the peer; `online`: the receiver's socket is up.
    pub fn accept(&mut self, kind: RelayKind, frame: Frame, online: bool, limits: InboxLimits) -> Accepted {
        match kind {
            RelayKind::Signal if online && self.ready => Accepted::Now(frame),
            RelayKind::Signal => {
                if self.pending.len() >= limits.signals || self.pending_bytes + frame.len() > limits.signal_bytes {
                    return Accepted::Full;
                }
                self.pending_bytes += frame.len();
                self.pending.push_back(frame);
                Accepted::Held
            }
            RelayKind::Chat if online => Accepted::Now(frame),
            RelayKind::Chat => {
                if limits.missed_chat == 0 || frame.len() > limits.missed_chat_bytes {
                    return Accepted::Dropped(Dropped::MissedChatFull);
                }
                let mut overflow = false;
                while self.missed_chat.len() >= limits.missed_chat
                    || self.missed_chat_bytes + frame.len() > limits.missed_chat_bytes
                {
                    let oldest = self.missed_chat.pop_front().expect("over a bound means not empty");
                    self.missed_chat_bytes -= oldest.len();
                    overflow = true;
                }
                self.missed_chat_bytes += frame.len();
                self.missed_chat.push_back(frame);
                if overflow { Accepted::HeldDroppingOldest } else { Accepted::Held }
            }
            RelayKind::Typing if online => Accepted::Now(frame),
            RelayKind::Typing => Accepted::Dropped(Dropped::PeerOffline),
        }
    }

    /// The client's `ready`: the held signals, in order, the first time; `None` after.
    pub fn ready(&mut self) -> Option<VecDeque<Frame>> {
        if self.ready {
            return None;
        }
        self.ready = true;
        self.pending_bytes = 0;
        Some(std::mem::take(&mut self.pending))
    }

    /// A new socket for the same match: its client builds a new peer connection, so
    /// signals held for the old one are stale and it must say `ready` again. Returns
    /// the chat lines missed meanwhile.
    pub fn reconnected(&mut self) -> VecDeque<Frame> {
        self.renegotiate();
        self.missed_chat_bytes = 0;
        std::mem::take(&mut self.missed_chat)
    }

    /// The peer started a new negotiation: this client starts a new peer connection
    /// too, and signals held for the old one are stale. Missed chat stays.
    pub fn renegotiate(&mut self) {
        self.ready = false;
        self.pending.clear();
        self.pending_bytes = 0;
    }

    /// The socket dropped: whatever comes next waits for the session's return.
    pub fn went_away(&mut self) {
        self.ready = false;
    }

    /// The match ended (or a new one began): nothing held is for it any more.
    pub fn clear(&mut self) {
        *self = Inbox::default();
    }

    /// Messages held.
    pub fn held(&self) -> usize {
        self.pending.len() + self.missed_chat.len()
    }

    /// Bytes held.
    pub fn held_bytes(&self) -> usize {
        self.pending_bytes + self.missed_chat_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: InboxLimits = InboxLimits { signals: 2, signal_bytes: 10, missed_chat: 2, missed_chat_bytes: 8 };

    fn f(s: &'static str) -> Frame {
        Frame::from_static(s)
    }

    #[test]
    fn signals_wait_for_ready_within_both_bounds_then_pass() {
        let mut inbox = Inbox::default();
        assert_eq!(inbox.accept(RelayKind::Signal, f("aaaa"), true, LIMITS), Accepted::Held);
        assert_eq!(inbox.accept(RelayKind::Signal, f("bbbbbbb"), true, LIMITS), Accepted::Full, "11 bytes > 10");
        assert_eq!(inbox.accept(RelayKind::Signal, f("cc"), true, LIMITS), Accepted::Held);
        assert_eq!(inbox.accept(RelayKind::Signal, f("d"), true, LIMITS), Accepted::Full, "2 signals held");
        assert_eq!(inbox.ready().unwrap(), [f("aaaa"), f("cc")]);
        assert_eq!(inbox.ready(), None, "ready twice flushes nothing");
        assert_eq!(inbox.accept(RelayKind::Signal, f("e"), true, LIMITS), Accepted::Now(f("e")));
        assert_eq!(inbox.held(), 0);
    }

    #[test]
    fn an_absent_receiver_keeps_the_latest_chat_and_drops_typing() {
        let mut inbox = Inbox::default();
        for line in ["1", "2"] {
            assert_eq!(inbox.accept(RelayKind::Chat, f(line), false, LIMITS), Accepted::Held);
        }
        assert_eq!(inbox.accept(RelayKind::Chat, f("3"), false, LIMITS), Accepted::HeldDroppingOldest);
        assert_eq!(inbox.accept(RelayKind::Typing, f("t"), false, LIMITS), Accepted::Dropped(Dropped::PeerOffline));
        assert_eq!(inbox.reconnected(), [f("2"), f("3")]);
        assert_eq!(inbox.accept(RelayKind::Chat, f("4"), true, LIMITS), Accepted::Now(f("4")));
    }

    #[test]
    fn missed_chat_is_bounded_in_bytes_too() {
        let mut inbox = Inbox::default();
        assert_eq!(inbox.accept(RelayKind::Chat, f("aaaa"), false, LIMITS), Accepted::Held);
        assert_eq!(inbox.accept(RelayKind::Chat, f("bbbbbb"), false, LIMITS), Accepted::HeldDroppingOldest);
        assert_eq!(inbox.held_bytes(), 6);
        assert_eq!(
            inbox.accept(RelayKind::Chat, f("123456789"), false, LIMITS),
            Accepted::Dropped(Dropped::MissedChatFull)
        );
        assert_eq!(inbox.reconnected(), [f("bbbbbb")]);
        assert_eq!(inbox.held_bytes(), 0);
    }

    #[test]
    fn a_new_socket_must_say_ready_again_and_stale_signals_are_gone() {
        let mut inbox = Inbox::default();
        assert!(inbox.ready().unwrap().is_empty());
        inbox.went_away();
        assert_eq!(inbox.accept(RelayKind::Signal, f("old"), false, LIMITS), Accepted::Held);
        inbox.reconnected();
        assert_eq!(inbox.held(), 0);
        assert_eq!(inbox.accept(RelayKind::Signal, f("new"), true, LIMITS), Accepted::Held);
        assert_eq!(inbox.ready().unwrap(), [f("new")]);
    }
}
