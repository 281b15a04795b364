//! Deadlines: one side of a match's `ready` and the refresh of its TURN credentials
//! (each also recorded on the side itself, so ending a match takes its entries out at
//! once), and a session's deferred pool search (recorded on the session; it fires
//! within a second and is dropped then if the session stopped waiting).

use matcher::Millis;
use protocol::SessionId;
use std::collections::BTreeSet;

/// What falls due.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Due {
    /// The side has not said `ready` in time: the match fails.
    Ready,
    /// The side's TURN credentials are about to expire: send fresh ones.
    IceRefresh,
    /// A session's deferred pool search (its search budget allows it now).
    Search,
}

/// Every pending deadline, soonest first.
#[derive(Debug, Default)]
pub struct Timers {
    set: BTreeSet<(Millis, SessionId, Due)>,
}

impl Timers {
    /// Moves `sid`'s `due` deadline from `old` (if any) to `new` (if any).
    pub fn reset(&mut self, sid: SessionId, due: Due, old: Option<Millis>, new: Option<Millis>) {
        if let Some(t) = old {
            self.set.remove(&(t, sid, due));
        }
        if let Some(t) = new {
            self.set.insert((t, sid, due));
        }
    }

    /// Takes out the soonest deadline that is due by `now`.
    pub fn pop_due(&mut self, now: Millis) -> Option<(SessionId, Due)> {
        let &(t, sid, due) = self.set.first()?;
        if t > now {
            return None;
        }
        self.set.pop_first();
        Some((sid, due))
    }

    pub fn next(&self) -> Option<Millis> {
        self.set.first().map(|&(t, _, _)| t)
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}
