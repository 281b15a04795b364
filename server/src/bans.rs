//! Bans: addresses refused at TCP accept, before a byte of theirs is read.
//!
//! A ban names an address *key* ([`client_key`]: an IPv4 address, or an IPv6 /64, since
//! one subscriber holds a whole /64). The hub decides bans (a flagged frame, reports
//! from distinct addresses); an operator can add and lift them on the admin API; in a
//! cluster every node mirrors the same set from Redis. [`Bans`] is that set: checked on
//! every accepted connection (one read lock, or none at all while nothing is banned),
//! with a feed of changes for the hub, the cluster and HAProxy's runtime ACL.
//!
//! Repeat offenders get longer bans: each key's *strikes* (bans within
//! [`BanPolicy::memory`]) pick the next step of [`BanPolicy::ladder`]. A lifted ban is
//! forgotten, strikes and all (an appeal granted leaves no record).

use crate::limits::client_key;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;

/// Why an address was banned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BanKind {
    /// The moderation model flagged the user's own camera, or two independent viewers
    /// flagged their video.
    Model,
    /// Reports from distinct addresses within the report window.
    Reports,
    /// An operator, on the admin API.
    Admin,
}

impl BanKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            BanKind::Model => "model",
            BanKind::Reports => "reports",
            BanKind::Admin => "admin",
        }
    }
}

/// A ban in force (or, once `until` has passed, on record for its strikes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    /// The address key: an IPv4 address or the first address of an IPv6 /64.
    pub key: IpAddr,
    pub kind: BanKind,
    /// Shown to the banned user.
    pub reason: String,
    /// Unix milliseconds.
    pub since_ms: u64,
    pub until_ms: u64,
    /// This key's bans within the policy's memory, this one included.
    pub strike: u32,
}

impl Ban {
    pub fn active(&self, now_ms: u64) -> bool {
        self.until_ms > now_ms
    }

    /// The end, as RFC 3339 (UTC), for the `banned` message.
    pub fn until_rfc3339(&self) -> String {
        rfc3339(self.until_ms / 1000)
    }

    /// The key as a block, the way HAProxy's ACL files and people write it.
    pub fn block(&self) -> String {
        block(self.key)
    }
}

/// `key` as `a.b.c.d` or `x:x:x:x::/64`.
pub fn block(key: IpAddr) -> String {
    match key {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("{v6}/64"),
    }
}

/// What the hub (or an operator) asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BanOrder {
    /// Any address of the offender; the ban covers its key.
    pub ip: IpAddr,
    pub kind: BanKind,
    pub reason: String,
    /// For [`BanKind::Admin`]: how long (default: [`BanPolicy::model`]).
    pub duration: Option<Duration>,
}

/// How long bans last.
#[derive(Clone, Debug)]
pub struct BanPolicy {
    /// A flagged camera, the first time.
    pub model: Duration,
    /// Report bans by strike: the first, the second, the third and later.
    pub ladder: Vec<Duration>,
    /// How long a ban counts as a strike after it was issued.
    pub memory: Duration,
}

impl Default for BanPolicy {
    fn default() -> Self {
        Self {
            model: Duration::from_secs(24 * 3600),
            ladder: vec![Duration::from_secs(3600), Duration::from_secs(24 * 3600), Duration::from_secs(7 * 24 * 3600)],
            memory: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

impl BanPolicy {
    /// The length of strike `strike` (1-based) of kind `kind`.
    fn length(&self, kind: BanKind, strike: u32, asked: Option<Duration>) -> Duration {
        let step = |n: u32| {
            let i = (n.max(1) as usize - 1).min(self.ladder.len().saturating_sub(1));
            self.ladder.get(i).copied().unwrap_or(self.model)
        };
        match kind {
            BanKind::Reports => step(strike),
            // A flagged camera: its own default the first time; a repeat is never
            // shorter than a repeat report ban would be.
            BanKind::Model if strike <= 1 => self.model,
            BanKind::Model => self.model.max(step(strike)),
            BanKind::Admin => asked.unwrap_or(self.model),
        }
    }
}

/// A change to the set, for whoever follows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A ban was issued (`local`: here, not learnt from the cluster).
    Added { ban: Ban, local: bool },
    /// An operator lifted the ban on `key`.
    Lifted { key: IpAddr, local: bool },
    /// The ban on `key` ran out.
    Expired { key: IpAddr },
    /// This node's hub counted evidence against an address: shared so that every node
    /// of a cluster counts it too.
    Marked(Mark),
}

/// One address's evidence against another: a report, or (`flag`) a viewer's frame of
/// the stranger's video that the model flagged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub by: IpAddr,
    pub against: IpAddr,
    pub flag: bool,
}

/// The ban set. See the module docs.
#[derive(Debug)]
pub struct Bans {
    policy: BanPolicy,
    /// Every key with a ban on record, active or kept for its strikes.
    book: RwLock<HashMap<IpAddr, Ban>>,
    /// Bans in force, so that accepting costs no lock while there are none.
    active: AtomicUsize,
    changes: broadcast::Sender<Change>,
    /// When each key's ban was last lifted: a ban issued before that is stale, wherever
    /// it comes from (a record not yet deleted from Redis, a late entry).
    lifted: RwLock<HashMap<IpAddr, u64>>,
    /// Bumped at every new ban: open connections watch it (a receiver costs no
    /// buffer), and close themselves if their address is now banned.
    added: tokio::sync::watch::Sender<u64>,
}

impl Default for Bans {
    fn default() -> Self {
        Self::new(BanPolicy::default())
    }
}

/// A ban the hub asks for this soon after another one of the same key is the same
/// evidence, judged again elsewhere: the ban in force stands.
pub const RESTATED_MS: u64 = 60_000;

/// Unix milliseconds now.
pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Bans {
    pub fn new(policy: BanPolicy) -> Self {
        Self {
            policy,
            book: RwLock::default(),
            active: AtomicUsize::new(0),
            changes: broadcast::channel(1024).0,
            lifted: RwLock::default(),
            added: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Changes whenever a ban is added (see [`Bans::check`] then).
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.added.subscribe()
    }

    pub fn policy(&self) -> &BanPolicy {
        &self.policy
    }

    /// Announces evidence the hub counted here (see [`Change::Marked`]).
    pub fn marked(&self, mark: Mark) {
        let _ = self.changes.send(Change::Marked(mark));
    }

    /// Follows every change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// The ban in force on `ip`'s key at `now_ms`, if any.
    pub fn check(&self, ip: IpAddr, now_ms: u64) -> Option<Ban> {
        if self.active.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let book = self.book.read().unwrap_or_else(|p| p.into_inner());
        book.get(&client_key(ip)).filter(|b| b.active(now_ms)).cloned()
    }

    /// Issues a ban for `order` at `now_ms`: its length follows the key's strikes.
    /// A key already banned for longer keeps the longer ban (and is not told again:
    /// the answer is that ban).
    pub fn issue(&self, order: BanOrder, now_ms: u64) -> Ban {
        let key = client_key(order.ip);
        let ban = {
            let mut book = self.book.write().unwrap_or_else(|p| p.into_inner());
            let memory = self.policy.memory.as_millis() as u64;
            let before = book.get(&key).filter(|b| b.since_ms.saturating_add(memory) > now_ms);
            let strike = before.map_or(0, |b| b.strike) + 1;
            let length = self.policy.length(order.kind, strike, order.duration).as_millis() as u64;
            let ban = Ban {
                key,
                kind: order.kind,
                reason: order.reason,
                since_ms: now_ms,
                until_ms: now_ms.saturating_add(length),
                strike,
            };
            if let Some(b) = before.filter(|b| b.active(now_ms) && b.until_ms >= ban.until_ms) {
                return b.clone();
            }
            // The same evidence judged on two nodes of a cluster: one strike, not two.
            // (A banned address cannot connect, so nothing new is held against it
            // this soon: only marks made before its ban.)
            if let Some(b) = before.filter(|b| {
                order.kind != BanKind::Admin && b.active(now_ms) && now_ms < b.since_ms.saturating_add(RESTATED_MS)
            }) {
                return b.clone();
            }
            book.insert(key, ban.clone());
            ban
        };
        self.recount(now_ms);
        self.added.send_modify(|n| *n += 1);
        let _ = self.changes.send(Change::Added { ban: ban.clone(), local: true });
        ban
    }

    /// Takes in a ban issued elsewhere in the cluster (or reloaded from Redis).
    /// Returns whether it changed anything: not for a ban already held, nor for one
    /// issued before its key's last lift.
    pub fn learn(&self, ban: Ban, now_ms: u64) -> bool {
        if self.lifted_at(ban.key).is_some_and(|at| ban.since_ms <= at) {
            return false;
        }
        {
            let mut book = self.book.write().unwrap_or_else(|p| p.into_inner());
            if book.get(&ban.key) == Some(&ban) {
                return false;
            }
            book.insert(ban.key, ban.clone());
        }
        self.recount(now_ms);
        self.added.send_modify(|n| *n += 1);
        let _ = self.changes.send(Change::Added { ban, local: false });
        true
    }

    /// Lifts the ban on `ip`'s key and forgets its strikes. `local`: asked here (an
    /// operator), not learnt from the cluster; `at_ms`: when it was lifted (where it
    /// was), which makes any copy of a ban issued before then stale.
    pub fn lift(&self, ip: IpAddr, local: bool, at_ms: u64, now_ms: u64) -> Option<Ban> {
        let key = client_key(ip);
        let mut lifted = self.lifted.write().unwrap_or_else(|p| p.into_inner());
        let at = lifted.entry(key).or_insert(at_ms);
        *at = (*at).max(at_ms);
        drop(lifted);
        let lifted = self.book.write().unwrap_or_else(|p| p.into_inner()).remove(&key);
        if lifted.is_some() {
            self.recount(now_ms);
            let _ = self.changes.send(Change::Lifted { key, local });
        }
        lifted
    }

    /// When the ban on `ip`'s key was last lifted (within the policy's memory).
    pub fn lifted_at(&self, ip: IpAddr) -> Option<u64> {
        self.lifted.read().unwrap_or_else(|p| p.into_inner()).get(&client_key(ip)).copied()
    }

    /// Bans in force at `now_ms`, the longest-running last.
    pub fn list(&self, now_ms: u64) -> Vec<Ban> {
        let book = self.book.read().unwrap_or_else(|p| p.into_inner());
        let mut list: Vec<Ban> = book.values().filter(|b| b.active(now_ms)).cloned().collect();
        list.sort_by_key(|b| (b.until_ms, b.key));
        list
    }

    /// Every ban on record (active or kept for its strikes).
    pub fn records(&self) -> Vec<Ban> {
        self.book.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// Announces bans that ran out since the last sweep and forgets records past the
    /// policy's memory. Call it about once a second.
    pub fn sweep(&self, now_ms: u64, last_ms: u64) {
        let memory = self.policy.memory.as_millis() as u64;
        let expired: Vec<IpAddr> = {
            let mut book = self.book.write().unwrap_or_else(|p| p.into_inner());
            book.retain(|_, b| b.since_ms.saturating_add(memory) > now_ms || b.active(now_ms));
            book.values().filter(|b| b.until_ms > last_ms && b.until_ms <= now_ms).map(|b| b.key).collect()
        };
        // A stale ban outlives no record of its own: forget lifts as old as the memory.
        self.lifted.write().unwrap_or_else(|p| p.into_inner()).retain(|_, at| at.saturating_add(memory) > now_ms);
        self.recount(now_ms);
        for key in expired {
            let _ = self.changes.send(Change::Expired { key });
        }
    }

    fn recount(&self, now_ms: u64) {
        let book = self.book.read().unwrap_or_else(|p| p.into_inner());
        self.active.store(book.values().filter(|b| b.active(now_ms)).count(), Ordering::Relaxed);
    }
}

/// Keeps `hub` and the metrics in step with the set until the hub stops: every ban
/// issued (by an operator, or learnt from the cluster) ends its address's sessions
/// here; expiries are announced once a second.
pub async fn follow(bans: Arc<Bans>, hub: crate::hub::HubHandle) {
    let mut changes = bans.subscribe();
    let mut last = unix_ms();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = hub.failed() => return,
            _ = tick.tick() => {
                let now = unix_ms();
                bans.sweep(now, last);
                last = now;
            }
            change = changes.recv() => match change {
                Ok(Change::Added { ban, local }) => {
                    if local {
                        metrics::counter!(crate::metrics::BANS, "kind" => ban.kind.as_str()).increment(1);
                    }
                    // A ban the hub issued itself finds its sessions gone already.
                    if hub.banned(ban).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    // Too many at once: end the sessions of every ban in force.
                    tracing::warn!("{n} ban changes went by unread; re-applying every ban");
                    for ban in bans.list(unix_ms()) {
                        if hub.banned(ban).is_err() {
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// Unix seconds as RFC 3339 in UTC (`2026-12-02T16:00:00Z`).
pub fn rfc3339(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let rest = unix_secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest / 60 % 60, rest % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3_600_000;

    fn order(ip: &str, kind: BanKind) -> BanOrder {
        BanOrder { ip: ip.parse().unwrap(), kind, reason: "test".into(), duration: None }
    }

    #[test]
    fn a_ban_covers_the_whole_ipv6_64_and_runs_out() {
        let bans = Bans::default();
        let ban = bans.issue(order("2001:db8:1:2::5", BanKind::Model), 0);
        assert_eq!((ban.until_ms, ban.block().as_str()), (24 * H, "2001:db8:1:2::/64"));
        assert!(bans.check("2001:db8:1:2:ffff::1".parse().unwrap(), 1).is_some(), "same /64");
        assert!(bans.check("2001:db8:1:3::5".parse().unwrap(), 1).is_none(), "next /64");
        assert!(bans.check("2001:db8:1:2::5".parse().unwrap(), 24 * H).is_none(), "expired");
        assert!(bans.check("::ffff:192.0.2.1".parse().unwrap(), 1).is_none());
    }

    #[test]
    fn a_ban_issued_before_its_keys_last_lift_is_not_learnt_again() {
        let bans = Bans::default();
        let ban = bans.issue(order("192.0.2.7", BanKind::Reports), 10);
        bans.lift(ban.key, true, 20, 20);
        bans.lift(ban.key, false, 15, 21);
        assert_eq!(bans.lifted_at(ban.key), Some(20), "an older lift heard late moves nothing");
        assert!(!bans.learn(ban.clone(), 30), "a stale record (Redis, a late entry) stays lifted");
        assert!(bans.check(ban.key, 30).is_none());
        let again = Ban { since_ms: 25, until_ms: 25 + H, ..ban };
        assert!(bans.learn(again, 30), "a ban issued after the lift holds");
        assert!(bans.check("192.0.2.7".parse().unwrap(), 30).is_some());
        bans.sweep(31 * 24 * H, 30);
        assert_eq!(bans.lifted_at("192.0.2.7".parse().unwrap()), None, "lifts are forgotten with the memory");
    }

    #[test]
    fn the_same_evidence_judged_again_soon_after_is_one_strike() {
        let bans = Bans::default();
        let first = bans.issue(order("192.0.2.8", BanKind::Reports), 0);
        // Another node's hub judging the same marks a moment later: the ban stands.
        assert_eq!(bans.issue(order("192.0.2.8", BanKind::Reports), 50), first);
        assert_eq!(bans.issue(order("192.0.2.8", BanKind::Model), RESTATED_MS - 1), first);
        // An operator's ban is never swallowed, and later evidence climbs the ladder.
        assert_eq!(bans.issue(order("192.0.2.8", BanKind::Admin), 100).kind, BanKind::Admin);
        assert_eq!(bans.issue(order("192.0.2.8", BanKind::Reports), 100 + RESTATED_MS).strike, 3);
    }

    #[test]
    fn report_bans_escalate_and_a_lift_forgets_the_strikes() {
        let bans = Bans::default();
        let ip = "192.0.2.7";
        let lengths: Vec<u64> = (0..4)
            .map(|i| {
                let at = i * 8 * 24 * H;
                let b = bans.issue(order(ip, BanKind::Reports), at);
                (b.until_ms - at) / H
            })
            .collect();
        assert_eq!(lengths, [1, 24, 168, 168]);
        bans.lift(ip.parse().unwrap(), true, 40 * 24 * H, 40 * 24 * H);
        assert_eq!(bans.issue(order(ip, BanKind::Reports), 40 * 24 * H).strike, 1);
    }

    #[test]
    fn strikes_are_forgotten_after_the_memory_and_a_camera_ban_is_never_shorter_than_its_default() {
        let bans = Bans::default();
        let ip = "192.0.2.8";
        assert_eq!(bans.issue(order(ip, BanKind::Reports), 0).strike, 1);
        let model = bans.issue(order(ip, BanKind::Model), 2 * H);
        assert_eq!((model.strike, model.until_ms - 2 * H), (2, 24 * H));
        let much_later = 31 * 24 * H;
        assert_eq!(bans.issue(order(ip, BanKind::Reports), much_later).strike, 1);
    }

    #[test]
    fn a_shorter_ban_does_not_cut_a_longer_one() {
        let bans = Bans::default();
        let ip = "192.0.2.9";
        let long = bans.issue(order(ip, BanKind::Model), 0);
        let again = bans.issue(BanOrder { duration: Some(Duration::from_secs(60)), ..order(ip, BanKind::Admin) }, 1);
        assert_eq!(again, long);
    }

    #[test]
    fn changes_are_announced_and_expiry_is_swept() {
        let bans = Bans::default();
        let mut feed = bans.subscribe();
        let ban =
            bans.issue(BanOrder { duration: Some(Duration::from_secs(1)), ..order("10.0.0.1", BanKind::Admin) }, 0);
        assert_eq!(feed.try_recv().unwrap(), Change::Added { ban, local: true });
        bans.sweep(500, 0);
        assert!(feed.try_recv().is_err(), "not yet");
        bans.sweep(1500, 500);
        assert_eq!(feed.try_recv().unwrap(), Change::Expired { key: "10.0.0.1".parse().unwrap() });
        assert!(bans.list(1500).is_empty());
        assert_eq!(bans.records().len(), 1, "kept for its strike");
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_227_199), "2026-12-02T15:59:59Z");
        assert_eq!(rfc3339(4_107_542_399), "2100-02-28T23:59:59Z");
    }
}
