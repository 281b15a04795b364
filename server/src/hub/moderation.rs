//! Reports: one per reporter and match counts against the reported address, within a
//! window (older reports expire, so the table empties). This is where bans will be
//! decided.

use super::model::Session;
use matcher::Millis;
use protocol::MatchId;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// Reports received within the window, per reported address.
#[derive(Debug, Default)]
pub struct Moderation {
    /// Reports within the window, per address.
    counts: HashMap<IpAddr, u32>,
    /// Every report within the window, oldest first (times only grow).
    log: VecDeque<(Millis, IpAddr)>,
    /// Reports ever counted.
    total: u64,
}

impl Moderation {
    /// Counts `reporter`'s report of match `match_id` against `peer_ip` at `now`.
    /// Returns the address's count within the window, or `None` when this reporter
    /// already reported that match.
    pub fn report(&mut self, reporter: &mut Session, match_id: MatchId, peer_ip: IpAddr, now: Millis) -> Option<u32> {
        if reporter.reported.contains(&match_id) {
            return None;
        }
        // Only the current and the last match can be reported: two entries suffice.
        if reporter.reported.len() == 2 {
            reporter.reported.remove(0);
        }
        reporter.reported.push(match_id);
        self.log.push_back((now, peer_ip));
        self.total += 1;
        let count = self.counts.entry(peer_ip).or_default();
        *count = count.saturating_add(1);
        Some(*count)
    }

    /// Forgets reports made `window` or longer before `now`.
    pub fn expire(&mut self, now: Millis, window: Millis) {
        while let Some(&(at, ip)) = self.log.front() {
            if at.saturating_add(window) > now {
                break;
            }
            self.log.pop_front();
            if let Some(n) = self.counts.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    self.counts.remove(&ip);
                }
            }
        }
    }

    /// When the oldest report expires.
    pub fn next_expiry(&self, window: Millis) -> Option<Millis> {
        self.log.front().map(|&(at, _)| at.saturating_add(window))
    }

    /// Reports within the window against `ip`.
    pub fn count(&self, ip: IpAddr) -> u32 {
        self.counts.get(&ip).copied().unwrap_or(0)
    }

    /// Reports within the window (entries held).
    pub fn held(&self) -> usize {
        self.log.len()
    }

    /// Reports counted since the start, over all addresses.
    pub fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::ResumeToken;
    use uuid::Uuid;

    #[test]
    fn reports_count_within_the_window_and_then_expire() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut m = Moderation::default();
        let mut reporter = Session::new(ResumeToken(Uuid::nil()), crate::hub::ConnId(1), "192.0.2.9".parse().unwrap());
        assert_eq!(m.report(&mut reporter, MatchId(Uuid::from_u128(1)), ip, 0), Some(1));
        assert_eq!(m.report(&mut reporter, MatchId(Uuid::from_u128(1)), ip, 5), None, "once per match");
        assert_eq!(m.report(&mut reporter, MatchId(Uuid::from_u128(2)), ip, 10), Some(2));
        assert_eq!(m.next_expiry(100), Some(100));
        m.expire(99, 100);
        assert_eq!(m.count(ip), 2);
        m.expire(100, 100);
        assert_eq!((m.count(ip), m.held()), (1, 1));
        m.expire(110, 100);
        assert_eq!((m.count(ip), m.held(), m.total()), (0, 0, 2));
        assert!(m.counts.is_empty(), "no empty entries are left behind");
    }
}
