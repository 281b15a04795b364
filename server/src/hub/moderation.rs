//! Reports: one per reporter and match counts against the reported address. This is
//! where bans will be decided.

use super::model::Session;
use protocol::MatchId;
use std::collections::HashMap;
use std::net::IpAddr;

/// Reports received, per reported address.
#[derive(Debug, Default)]
pub struct Moderation {
    reports: HashMap<IpAddr, u32>,
}

impl Moderation {
    /// Counts `reporter`'s report of match `match_id` against `peer_ip`. Returns the
    /// address's new count, or `None` when this reporter already reported that match.
    pub fn report(&mut self, reporter: &mut Session, match_id: MatchId, peer_ip: IpAddr) -> Option<u32> {
        if reporter.reported.contains(&match_id) {
            return None;
        }
        // Only the current and the last match can be reported: two entries suffice.
        if reporter.reported.len() == 2 {
            reporter.reported.remove(0);
        }
        reporter.reported.push(match_id);
        let count = self.reports.entry(peer_ip).or_default();
        *count = count.saturating_add(1);
        Some(*count)
    }

    /// Reports counted so far, over all addresses.
    pub fn total(&self) -> u64 {
        self.reports.values().map(|&n| u64::from(n)).sum()
    }
}
