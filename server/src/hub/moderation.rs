//! Reports and viewers' flags against an address key, within a window: the evidence
//! bans are decided on.
//!
//! Each address key ([`client_key`]: an IPv4 address or an IPv6 /64) counts once per
//! reported key, however often it reports: ten reports from one person, or from one
//! household's /64, are one. A *flag* is a stranger's frame the model flagged, seen
//! by a viewer: a strong report, which also counts towards the report threshold. One
//! flag never bans on its own (a modified client could send anything as "the
//! stranger's video"); flags from two distinct viewers do.
//!
//! Marks expire after the window, so the table empties; a ban clears its key's marks.
//! In a cluster each node also counts the marks the others counted (shared through the
//! backend), so reports and flags from users on different nodes add up; every node
//! judges what it holds (see `HubCore::learn`).

use super::model::Session;
use crate::limits::client_key;
use matcher::Millis;
use protocol::MatchId;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// One address's evidence against another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mark {
    by: IpAddr,
    at: Millis,
    /// A flagged frame (not only a report).
    flag: bool,
}

/// What is held against an address key now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Distinct addresses that reported it or flagged its video.
    pub reporters: u32,
    /// Distinct addresses whose view of its video was flagged.
    pub flaggers: u32,
}

/// Reports and flags within the window. See the module docs.
#[derive(Debug, Default)]
pub struct Moderation {
    /// Per reported key, the latest mark of each reporting key.
    against: HashMap<IpAddr, Vec<Mark>>,
    /// Every mark within the window, oldest first (times only grow): when each expires.
    log: VecDeque<(Millis, IpAddr)>,
    /// Reports ever counted.
    total: u64,
}

impl Moderation {
    /// Counts `reporter`'s report of match `match_id` against `peer_ip` at `now`.
    /// `None` when this reporter already reported that match.
    pub fn report(&mut self, reporter: &mut Session, match_id: MatchId, peer_ip: IpAddr, now: Millis) -> Option<Tally> {
        if reporter.reported.contains(&match_id) {
            return None;
        }
        // Only the current and the last match can be reported: two entries suffice.
        if reporter.reported.len() == 2 {
            reporter.reported.remove(0);
        }
        reporter.reported.push(match_id);
        self.total += 1;
        Some(self.mark(reporter.ip, peer_ip, false, now))
    }

    /// A viewer at `viewer_ip` saw `peer_ip`'s video flagged at `now`.
    pub fn flag(&mut self, viewer_ip: IpAddr, peer_ip: IpAddr, now: Millis) -> Tally {
        self.mark(viewer_ip, peer_ip, true, now)
    }

    /// Counts `by`'s evidence against `against` at `now` (a report or a flag counted by
    /// another node, as [`Moderation::report`] or [`Moderation::flag`] did there).
    pub fn mark(&mut self, by: IpAddr, against: IpAddr, flag: bool, now: Millis) -> Tally {
        let (by, key) = (client_key(by), client_key(against));
        if by == key {
            // Two people behind one address (or /64) reporting each other: that
            // address cannot be its own independent witness.
            return self.tally(key);
        }
        let marks = self.against.entry(key).or_default();
        match marks.iter_mut().find(|m| m.by == by) {
            // The same address again: its mark is renewed (and a flag stays a flag).
            Some(m) => *m = Mark { by, at: now, flag: flag || m.flag },
            None => marks.push(Mark { by, at: now, flag }),
        }
        self.log.push_back((now, key));
        self.tally(key)
    }

    /// What is held against `ip`'s key.
    pub fn tally(&self, ip: IpAddr) -> Tally {
        let marks = self.against.get(&client_key(ip)).map_or(&[][..], Vec::as_slice);
        Tally { reporters: marks.len() as u32, flaggers: marks.iter().filter(|m| m.flag).count() as u32 }
    }

    /// Forgets the evidence against `ip`'s key (it has been banned).
    pub fn clear(&mut self, ip: IpAddr) {
        self.against.remove(&client_key(ip));
    }

    /// Forgets marks made `window` or longer before `now`.
    pub fn expire(&mut self, now: Millis, window: Millis) {
        while let Some(&(at, key)) = self.log.front() {
            if at.saturating_add(window) > now {
                break;
            }
            self.log.pop_front();
            if let Some(marks) = self.against.get_mut(&key) {
                marks.retain(|m| m.at.saturating_add(window) > now);
                if marks.is_empty() {
                    self.against.remove(&key);
                }
            }
        }
    }

    /// When the oldest mark expires.
    pub fn next_expiry(&self, window: Millis) -> Option<Millis> {
        self.log.front().map(|&(at, _)| at.saturating_add(window))
    }

    /// Marks within the window (entries held).
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

    fn reporter(ip: &str) -> Session {
        Session::new(ResumeToken(Uuid::nil()), crate::hub::ConnId(1), ip.parse().unwrap())
    }

    fn m(n: u128) -> MatchId {
        MatchId(Uuid::from_u128(n))
    }

    #[test]
    fn reports_count_distinct_addresses_within_the_window_and_then_expire() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut md = Moderation::default();
        let mut one = reporter("192.0.2.9");
        assert_eq!(md.report(&mut one, m(1), ip, 0).map(|t| t.reporters), Some(1));
        assert_eq!(md.report(&mut one, m(1), ip, 5), None, "once per match");
        assert_eq!(md.report(&mut one, m(2), ip, 10).map(|t| t.reporters), Some(1), "the same address counts once");
        let mut two = reporter("192.0.2.10");
        assert_eq!(md.report(&mut two, m(3), ip, 20).map(|t| t.reporters), Some(2));
        assert_eq!(md.next_expiry(100), Some(100));
        md.expire(100, 100);
        assert_eq!(md.tally(ip).reporters, 2, "the first address's mark was renewed at 10");
        md.expire(110, 100);
        assert_eq!(md.tally(ip).reporters, 1);
        md.expire(120, 100);
        assert_eq!((md.tally(ip), md.held(), md.total()), (Tally::default(), 0, 3));
        assert!(md.against.is_empty(), "no empty entries are left behind");
    }

    #[test]
    fn one_ipv6_64_is_one_reporter_and_one_offender() {
        let mut md = Moderation::default();
        let target: IpAddr = "2001:db8:9::1".parse().unwrap();
        for (n, ip) in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"].into_iter().enumerate() {
            md.report(&mut reporter(ip), m(n as u128), target, 0);
        }
        assert_eq!(md.tally("2001:db8:9::ffff".parse().unwrap()).reporters, 1);
        md.report(&mut reporter("2001:db8:1:3::1"), m(9), target, 0);
        assert_eq!(md.tally(target).reporters, 2);
    }

    #[test]
    fn flags_count_as_reports_and_need_two_viewers() {
        let mut md = Moderation::default();
        let peer: IpAddr = "198.51.100.1".parse().unwrap();
        let viewer: IpAddr = "198.51.100.2".parse().unwrap();
        assert_eq!(md.flag(viewer, peer, 0), Tally { reporters: 1, flaggers: 1 });
        assert_eq!(md.flag(viewer, peer, 1), Tally { reporters: 1, flaggers: 1 }, "one viewer, however often");
        md.report(&mut reporter("198.51.100.3"), m(1), peer, 2);
        assert_eq!(md.tally(peer), Tally { reporters: 2, flaggers: 1 });
        assert_eq!(md.flag("198.51.100.3".parse().unwrap(), peer, 3), Tally { reporters: 2, flaggers: 2 });
        md.clear(peer);
        assert_eq!(md.tally(peer), Tally::default());
    }

    #[test]
    fn an_address_is_no_witness_against_itself() {
        let mut md = Moderation::default();
        let home: IpAddr = "2001:db8:5:6::1".parse().unwrap();
        md.report(&mut reporter("2001:db8:5:6::2"), m(1), home, 0);
        assert_eq!(md.flag("2001:db8:5:6:ffff::3".parse().unwrap(), home, 1), Tally::default());
        assert_eq!(md.mark(home, home, true, 2), Tally::default());
        assert_eq!(md.held(), 0);
    }
}
