//! Matchmaking as a pure state machine.
//!
//! The [`Matcher`] holds the waiting tickets of both modes and pairs them. It does no
//! I/O, takes no locks and reads no clock: the caller passes the current time (in
//! milliseconds on any monotonic scale) into every call and gets the resulting
//! [`Pair`]s back. The server runs it inside the one task that owns it; a cluster
//! matcher service can run the same code over tickets stored in Redis, because the
//! only state that must survive, the waiting tickets with their enqueue times, is
//! plain serializable data ([`Waiting`]); everything else is an index rebuilt from it.
//!
//! Rules:
//! - Video and text tickets are never paired together.
//! - A ticket with interests only accepts partners sharing at least one of them until
//!   it has waited [`Config::interest_fallback`]; then anyone compatible will do.
//! - `same_country` is honoured in both directions.
//! - A ticket lists sessions it must not meet ([`Avoid`]), until a time or forever;
//!   the rule applies if either side lists the other.
//! - Among compatible partners the best has the most common interests, then the same
//!   country, then the longest wait.
//!
//! Invariant after every call: no two waiting tickets are compatible at the time given
//! (so nobody waits while a compatible partner waits), provided the caller calls
//! [`Matcher::tick`] once the time reaches [`Matcher::next_deadline`] (and the search
//! bound below was not reached).
//!
//! # How a partner is found
//!
//! Because of the invariant, only a ticket that just arrived, or whose compatibility
//! just widened (its interest fallback or an avoid entry ran out), can have a partner,
//! so each of those looks for its own best partner once; nobody else needs looking at.
//! That search walks indexes rather than the whole pool. Per mode, every ticket is
//! filed:
//! - under each of its interests (whether or not it still insists on one), and
//! - on the *open* shelf once it accepts a partner without a common interest (it has
//!   no interests, or its fallback was reached, as processed by [`Matcher::tick`]);
//!
//! and within each of those by what it needs of a partner's country: under its country
//! if it gave one (insisting on it or not), and under "anyone" unless it insists on the
//! same country. A ticket insisting on the same country without giving one can never
//! be paired and is filed nowhere.
//!
//! A ticket looks, for each of its interests, at the tickets filed under that interest
//! and under its own country or, unless it insists, under "anyone": those are exactly
//! the tickets sharing an interest with it that the country rules let it meet, and the
//! best of them (by the rules above) wins. Only if there is none and it no longer insists on
//! a common interest itself does it look at the open shelf, its own country first: the
//! first (longest waiting) compatible ticket there is then the best. Every candidate is
//! still checked against all the rules, so the indexes only narrow the search; a
//! candidate is only turned down for an [`Avoid`] entry or a caller's clock going
//! backwards. A join therefore costs O(its interests × log pool) plus the candidates
//! examined, whatever the pool holds.
//!
//! The search examines at most [`MAX_CANDIDATES`] candidates. Any two tickets on one
//! list may be paired unless an avoid entry keeps them apart, so by the invariant a
//! list holds more than one ticket only through avoid entries, and a search walks at
//! most two lists per interest plus two (22 with `protocol`'s limit of 10 interests).
//! In honest traffic the lists stay that short, the bound is not reached and the result
//! is exactly that of a scan of the whole pool. A pool crafted to fill one ticket's
//! lists with sessions it avoids (or that avoid it) cannot make a join cost more, but a
//! compatible partner beyond the bound is then missed (and the invariant broken) until
//! one of the two searches again: at its next join, fallback or avoid deadline.

#[cfg(feature = "service")]
pub mod service;
#[cfg(feature = "service")]
pub mod store;

use protocol::{Mode, SessionId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Milliseconds on the caller's monotonic time scale.
pub type Millis = u64;

/// Most candidates one search for a partner examines (see the crate docs): well above
/// the 22 lists an honest search may find one ticket on each. Larger means a crafted
/// pool can hide a partner less often, but a join can cost more: one candidate costs a
/// comparison of the two tickets' avoid lists and interests.
pub const MAX_CANDIDATES: usize = 64;

/// Tunables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// How long a ticket with interests holds out for a partner sharing one.
    pub interest_fallback: Millis,
}

impl Default for Config {
    fn default() -> Self {
        Self { interest_fallback: 5_000 }
    }
}

/// A session that must not be met, until `until` (exclusive) or forever when `None`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Avoid {
    pub session: SessionId,
    pub until: Option<Millis>,
}

impl Avoid {
    fn active(&self, now: Millis) -> bool {
        self.until.is_none_or(|t| now < t)
    }
}

/// What a session is looking for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub session: SessionId,
    pub mode: Mode,
    /// Normalized interests (see `protocol::Preferences::normalize`).
    pub interests: Vec<String>,
    pub country: Option<String>,
    pub same_country: bool,
    /// Sessions this one must not be paired with.
    pub avoid: Vec<Avoid>,
}

impl Ticket {
    /// Whether anyone at all could be paired with this ticket: not when it insists on
    /// the same country without giving one.
    fn reachable(&self) -> bool {
        !self.same_country || self.country.is_some()
    }
}

/// A ticket in the queue with the time it started waiting (kept across preference
/// changes and reconnects so a session keeps its place).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    pub ticket: Ticket,
    pub since: Millis,
}

/// Two sessions paired. `first` waited longer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pair {
    pub first: SessionId,
    pub second: SessionId,
    pub mode: Mode,
    /// Interests both listed, in `first`'s order.
    pub common_interests: Vec<String>,
}

/// Queue order: enqueue time, then insertion sequence (unique).
type Key = (Millis, u64);

/// The matchmaking state machine. See the crate docs for the rules.
#[derive(Debug, Default)]
pub struct Matcher {
    config: Config,
    /// Waiting tickets per mode, with their indexes.
    pools: BTreeMap<Mode, Pool>,
    /// Where each waiting session's ticket is.
    index: HashMap<SessionId, (Mode, Key)>,
    /// Times at which a session's compatibility may widen (fallback reached or an
    /// avoid entry expired), so that session must look for a partner again.
    deadlines: BTreeSet<(Millis, SessionId)>,
    seq: u64,
}

impl Matcher {
    /// An empty matcher.
    pub fn new(config: Config) -> Self {
        Self { config, ..Self::default() }
    }

    /// Rebuilds a matcher from saved waiting tickets (e.g. after a matcher restart),
    /// pairing whatever has become compatible by `now`.
    pub fn from_waiting(config: Config, waiting: impl IntoIterator<Item = Waiting>, now: Millis) -> (Self, Vec<Pair>) {
        let mut m = Self::new(config);
        let mut pairs = Vec::new();
        for w in waiting {
            pairs.extend(m.insert(w.ticket, w.since, now));
        }
        (m, pairs)
    }

    /// The configuration in use.
    pub fn config(&self) -> Config {
        self.config
    }

    /// Number of waiting tickets in `mode`.
    pub fn waiting_count(&self, mode: Mode) -> usize {
        self.pools.get(&mode).map_or(0, |p| p.tickets.len())
    }

    /// Total number of waiting tickets.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether nobody is waiting.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Number of entries in the search indexes (see the crate docs): a ticket is filed
    /// at most twice per interest and twice on the open shelf, so this is at most
    /// `2 × (interests + 1)` per waiting ticket, and 0 when nobody waits. The memory
    /// the indexes hold is proportional to it (no empty list is kept), for size checks.
    pub fn index_entries(&self) -> usize {
        self.pools.values().map(|p| p.entries).sum()
    }

    /// Whether `session` is waiting.
    pub fn contains(&self, session: SessionId) -> bool {
        self.index.contains_key(&session)
    }

    /// Every waiting ticket, per mode oldest first: the state worth saving.
    pub fn waiting(&self) -> impl Iterator<Item = &Waiting> {
        self.pools.values().flat_map(|p| p.tickets.values())
    }

    /// Queues `ticket` as waiting since `since` (use `now` for a fresh join, or the
    /// original time to keep a place), replacing any ticket of the same session, and
    /// pairs whatever is compatible at `now`.
    pub fn insert(&mut self, ticket: Ticket, since: Millis, now: Millis) -> Vec<Pair> {
        let session = ticket.session;
        // A ticket replaced in place (same `since`) keeps its arrival order too, so
        // tickets enqueued in the same millisecond keep their order.
        let kept = self.index.get(&session).filter(|(_, key)| key.0 == since).map(|&(_, key)| key);
        self.remove(session);
        let key = kept.unwrap_or_else(|| {
            self.seq += 1;
            (since, self.seq - 1)
        });
        self.add_deadlines(&ticket, since, now);
        self.index.insert(session, (ticket.mode, key));
        let waiting = Waiting { ticket, since };
        let open = !self.strict(&waiting, now);
        self.pools.entry(waiting.ticket.mode).or_default().add(key, waiting, open);
        let mut pairs = self.tick(now);
        if let Some(pair) = self.try_match(session, now) {
            pairs.push(pair);
        }
        pairs
    }

    /// Takes `session` out of the queue, returning its ticket.
    pub fn remove(&mut self, session: SessionId) -> Option<Waiting> {
        let (mode, key) = self.index.remove(&session)?;
        let pool = self.pools.get_mut(&mode).expect("an indexed ticket's pool exists");
        let waiting = pool.remove(key).expect("an indexed ticket is in its pool");
        if pool.tickets.is_empty() {
            debug_assert_eq!(pool.entries, 0, "an empty pool has empty indexes");
            self.pools.remove(&mode);
        }
        for t in self.deadline_times(&waiting.ticket, waiting.since) {
            self.deadlines.remove(&(t, session));
        }
        Some(waiting)
    }

    /// The earliest time at which [`Matcher::tick`] may pair someone.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.deadlines.first().map(|&(t, _)| t)
    }

    /// Lets time pass: sessions whose fallback or avoid entries ran out by `now` look
    /// for partners again, oldest first.
    pub fn tick(&mut self, now: Millis) -> Vec<Pair> {
        let mut due: Vec<(Mode, Key, SessionId)> = Vec::new();
        while let Some(&(t, session)) = self.deadlines.first() {
            if t > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(&(mode, key)) = self.index.get(&session) {
                due.push((mode, key, session));
            }
        }
        due.sort_unstable_by_key(|&(_, key, _)| key);
        due.dedup();
        // Every ticket whose fallback was reached goes on the open shelf before anyone
        // searches, so that two of them falling due together can find each other.
        for &(mode, key, _) in &due {
            let pool = self.pools.get_mut(&mode).expect("a waiting ticket's pool exists");
            if !strict(self.config, &pool.tickets[&key], now) {
                pool.open(key);
            }
        }
        due.into_iter().filter_map(|(_, _, session)| self.try_match(session, now)).collect()
    }

    /// Whether `a` and `b` may be paired at `now` (both must be waiting).
    pub fn compatible(&self, a: SessionId, b: SessionId, now: Millis) -> bool {
        match (self.get(a), self.get(b)) {
            (Some(x), Some(y)) => a != b && self.score(x, y, now).is_some(),
            _ => false,
        }
    }

    fn get(&self, session: SessionId) -> Option<&Waiting> {
        let (mode, key) = self.index.get(&session)?;
        self.pools.get(mode)?.tickets.get(key)
    }

    /// Finds the best partner for `session` and, if there is one, removes both.
    fn try_match(&mut self, session: SessionId, now: Millis) -> Option<Pair> {
        let &(mode, key) = self.index.get(&session)?;
        let pool = self.pools.get(&mode)?;
        let partner_key = self.best_partner(pool, key, now)?;
        let partner = pool.tickets[&partner_key].ticket.session;
        // Queue order (enqueue time, then arrival) decides who waited longer.
        let partner_first = partner_key < key;
        let a = self.remove(session).expect("the ticket being matched is waiting");
        let b = self.remove(partner).expect("the chosen partner is waiting");
        let (first, second) = if partner_first { (b, a) } else { (a, b) };
        let common_interests = common(&first.ticket.interests, &second.ticket.interests);
        Some(Pair {
            first: first.ticket.session,
            second: second.ticket.session,
            mode: first.ticket.mode,
            common_interests,
        })
    }

    /// The best partner in `pool` for the ticket at `key`, examining at most
    /// [`MAX_CANDIDATES`] others (see the crate docs).
    fn best_partner(&self, pool: &Pool, key: Key, now: Millis) -> Option<Key> {
        let me = &pool.tickets[&key];
        let ticket = &me.ticket;
        // Everyone sharing an interest whose country rules `me` meets: the best wins,
        // the longest waiting among equals.
        let sharing = ticket.interests.iter().filter_map(|i| pool.by_interest.get(i)).flat_map(|s| s.lists_for(ticket));
        let mut best: Option<(Score, Key)> = None;
        let mut examined = 0;
        for k in others(sharing, key).take(MAX_CANDIDATES) {
            examined += 1;
            if let Some(score) = self.score(me, &pool.tickets[&k], now)
                && best.is_none_or(|(b, bk)| score > b || (score == b && k < bk))
            {
                best = Some((score, k));
            }
        }
        if best.is_some() || self.strict(me, now) {
            return best.map(|(_, k)| k);
        }
        // Nobody shares an interest: the first compatible one on the open shelf, where
        // those of the same country (the better partners) come first.
        others(pool.open.lists_for(ticket), key)
            .take(MAX_CANDIDATES - examined)
            .find(|k| self.score(me, &pool.tickets[k], now).is_some())
    }

    /// `None` when `x` and `y` may not be paired at `now`; otherwise how good a pair
    /// they make (higher is better).
    fn score(&self, x: &Waiting, y: &Waiting, now: Millis) -> Option<Score> {
        let (a, b) = (&x.ticket, &y.ticket);
        if a.mode != b.mode {
            return None;
        }
        let avoids = |p: &Ticket, q: &Ticket| p.avoid.iter().any(|v| v.session == q.session && v.active(now));
        if avoids(a, b) || avoids(b, a) {
            return None;
        }
        let same_country = a.country.is_some() && a.country == b.country;
        if (a.same_country || b.same_country) && !same_country {
            return None;
        }
        let shared = a.interests.iter().filter(|i| b.interests.contains(i)).count();
        if shared == 0 && (self.strict(x, now) || self.strict(y, now)) {
            return None;
        }
        Some(Score { shared, same_country })
    }

    /// Whether `w` still insists on a common interest.
    fn strict(&self, w: &Waiting, now: Millis) -> bool {
        strict(self.config, w, now)
    }

    fn deadline_times(&self, ticket: &Ticket, since: Millis) -> impl Iterator<Item = Millis> + use<> {
        let fallback = (!ticket.interests.is_empty()).then(|| since.saturating_add(self.config.interest_fallback));
        let avoid_ends: Vec<Millis> = ticket.avoid.iter().filter_map(|a| a.until).collect();
        fallback.into_iter().chain(avoid_ends)
    }

    fn add_deadlines(&mut self, ticket: &Ticket, since: Millis, now: Millis) {
        let times: Vec<Millis> = self.deadline_times(ticket, since).filter(|&t| t > now).collect();
        for t in times {
            self.deadlines.insert((t, ticket.session));
            // The avoided session may now find this one too; waking this side is enough
            // because compatibility is symmetric.
        }
    }
}

/// Whether `w` still insists on a common interest at `now`.
fn strict(config: Config, w: &Waiting, now: Millis) -> bool {
    !w.ticket.interests.is_empty() && now < w.since.saturating_add(config.interest_fallback)
}

/// The waiting tickets of one mode, with the indexes a search walks (see the crate
/// docs).
#[derive(Debug, Default)]
struct Pool {
    /// Every waiting ticket, oldest first.
    tickets: BTreeMap<Key, Waiting>,
    /// Per interest, every reachable ticket listing it, insisting on one or not.
    by_interest: HashMap<String, Shelf>,
    /// The reachable tickets known to accept a partner without a common interest.
    open: Shelf,
    /// Number of keys in `by_interest` and `open`.
    entries: usize,
}

impl Pool {
    /// Adds a ticket, on the open shelf too if `open`.
    fn add(&mut self, key: Key, waiting: Waiting, open: bool) {
        let ticket = &waiting.ticket;
        if ticket.reachable() {
            for interest in &ticket.interests {
                self.entries += self.by_interest.entry(interest.clone()).or_default().file(ticket, key);
            }
        }
        self.tickets.insert(key, waiting);
        if open {
            self.open(key);
        }
    }

    /// Puts a waiting ticket on the open shelf (if it is not there already).
    fn open(&mut self, key: Key) {
        let ticket = &self.tickets[&key].ticket;
        self.entries += self.open.file(ticket, key);
    }

    /// Takes a ticket out of the pool and every index.
    fn remove(&mut self, key: Key) -> Option<Waiting> {
        let waiting = self.tickets.remove(&key)?;
        let ticket = &waiting.ticket;
        for interest in &ticket.interests {
            if let Some(shelf) = self.by_interest.get_mut(interest) {
                self.entries -= shelf.unfile(ticket, key);
                if shelf.is_empty() {
                    self.by_interest.remove(interest);
                }
            }
        }
        self.entries -= self.open.unfile(ticket, key);
        Some(waiting)
    }
}

/// Tickets filed by what they need of a partner's country, so that a search only walks
/// those whose country rule it meets.
#[derive(Debug, Default)]
struct Shelf {
    /// Tickets that do not insist on the same country, oldest first.
    anyone: BTreeSet<Key>,
    /// Per country, the tickets that gave it, insisting on it or not, oldest first.
    by_country: HashMap<String, BTreeSet<Key>>,
}

impl Shelf {
    /// Files `ticket` under `key`, returning how many entries that added.
    fn file(&mut self, ticket: &Ticket, key: Key) -> usize {
        let mut added = 0;
        if !ticket.same_country {
            added += usize::from(self.anyone.insert(key));
        }
        if let Some(country) = &ticket.country {
            added += usize::from(self.by_country.entry(country.clone()).or_default().insert(key));
        }
        added
    }

    /// Takes `ticket` out, dropping lists left empty; returns how many entries went.
    fn unfile(&mut self, ticket: &Ticket, key: Key) -> usize {
        let mut removed = 0;
        if !ticket.same_country {
            removed += usize::from(self.anyone.remove(&key));
        }
        if let Some(country) = &ticket.country
            && let Some(list) = self.by_country.get_mut(country)
        {
            removed += usize::from(list.remove(&key));
            if list.is_empty() {
                self.by_country.remove(country);
            }
        }
        removed
    }

    fn is_empty(&self) -> bool {
        self.anyone.is_empty() && self.by_country.is_empty()
    }

    /// The lists holding exactly the tickets the country rules allow to pair with
    /// `ticket`: those of its own country first, then, unless it insists on its
    /// country, those not insisting on theirs.
    fn lists_for<'a>(&'a self, ticket: &'a Ticket) -> impl Iterator<Item = &'a BTreeSet<Key>> + 'a {
        let own = ticket.country.as_ref().and_then(|c| self.by_country.get(c));
        let anyone = (!ticket.same_country).then_some(&self.anyone);
        own.into_iter().chain(anyone)
    }
}

/// The keys in `lists`, in order, except `me`.
fn others<'a>(lists: impl Iterator<Item = &'a BTreeSet<Key>>, me: Key) -> impl Iterator<Item = Key> {
    lists.flatten().copied().filter(move |&k| k != me)
}

/// Ranking of a compatible partner: compared field by field, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Score {
    /// Number of interests in common.
    shared: usize,
    /// Both gave the same country (a tie-breaker when not required).
    same_country: bool,
}

fn common(a: &[String], b: &[String]) -> Vec<String> {
    a.iter().filter(|i| b.contains(i)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(n: u128) -> SessionId {
        SessionId(uuid::Uuid::from_u128(n))
    }

    fn ticket(n: u128, mode: Mode, interests: &[&str]) -> Ticket {
        Ticket {
            session: sid(n),
            mode,
            interests: interests.iter().map(|s| s.to_string()).collect(),
            country: None,
            same_country: false,
            avoid: vec![],
        }
    }

    fn matcher() -> Matcher {
        Matcher::new(Config { interest_fallback: 5_000 })
    }

    #[test]
    fn two_compatible_tickets_are_paired_oldest_first() {
        let mut m = matcher();
        assert!(m.insert(ticket(1, Mode::Video, &[]), 0, 0).is_empty());
        let pairs = m.insert(ticket(2, Mode::Video, &[]), 10, 10);
        assert_eq!(pairs, vec![Pair { first: sid(1), second: sid(2), mode: Mode::Video, common_interests: vec![] }]);
        assert!(m.is_empty());
        // Within the same millisecond, arrival order decides.
        m.insert(ticket(3, Mode::Video, &[]), 20, 20);
        let pairs = m.insert(ticket(4, Mode::Video, &[]), 20, 20);
        assert_eq!((pairs[0].first, pairs[0].second), (sid(3), sid(4)));
    }

    #[test]
    fn modes_never_mix() {
        let mut m = matcher();
        m.insert(ticket(1, Mode::Video, &[]), 0, 0);
        assert!(m.insert(ticket(2, Mode::Text, &[]), 0, 0).is_empty());
        assert_eq!((m.waiting_count(Mode::Video), m.waiting_count(Mode::Text)), (1, 1));
    }

    #[test]
    fn an_interest_match_beats_an_earlier_waiter() {
        let mut m = matcher();
        m.insert(ticket(1, Mode::Video, &[]), 0, 0);
        m.insert(ticket(2, Mode::Text, &["chess"]), 0, 0);
        // 3 has interests: it holds out for 4 (shares "music") rather than take 1.
        assert!(m.insert(ticket(3, Mode::Text, &["music", "go"]), 1, 1).is_empty());
        let pairs = m.insert(ticket(4, Mode::Text, &["go", "music"]), 2, 2);
        assert_eq!(pairs[0].first, sid(3));
        assert_eq!(pairs[0].second, sid(4));
        assert_eq!(pairs[0].common_interests, vec!["music", "go"]);
    }

    #[test]
    fn more_common_interests_win_over_longer_waiting() {
        let mut m = matcher();
        m.insert(ticket(1, Mode::Video, &["a"]), 0, 0);
        m.insert(ticket(2, Mode::Video, &["b", "c"]), 1, 1);
        let pairs = m.insert(ticket(3, Mode::Video, &["a", "b", "c"]), 2, 2);
        assert_eq!((pairs[0].first, pairs[0].second), (sid(2), sid(3)));
    }

    #[test]
    fn interests_fall_back_to_anyone_after_the_configured_wait() {
        let mut m = matcher();
        m.insert(ticket(1, Mode::Video, &["music"]), 0, 0);
        assert!(m.insert(ticket(2, Mode::Video, &[]), 100, 100).is_empty());
        assert_eq!(m.next_deadline(), Some(5_000));
        assert!(m.tick(4_999).is_empty());
        let pairs = m.tick(5_000);
        assert_eq!(pairs.len(), 1);
        assert!(pairs[0].common_interests.is_empty());
        assert_eq!(m.next_deadline(), None);
    }

    #[test]
    fn same_country_is_honoured_both_ways() {
        let mut m = matcher();
        let mut de = ticket(1, Mode::Video, &[]);
        de.country = Some("DE".into());
        de.same_country = true;
        m.insert(de, 0, 0);
        let mut fr = ticket(2, Mode::Video, &[]);
        fr.country = Some("FR".into());
        assert!(m.insert(fr, 1, 1).is_empty(), "1 insists on DE");
        // 3 gives no country; 2 does not insist, so they pair.
        let pairs = m.insert(ticket(3, Mode::Video, &[]), 2, 2);
        assert_eq!((pairs[0].first, pairs[0].second), (sid(2), sid(3)));
        let mut de2 = ticket(4, Mode::Video, &[]);
        de2.country = Some("DE".into());
        let pairs = m.insert(de2, 3, 3);
        assert_eq!((pairs[0].first, pairs[0].second), (sid(1), sid(4)));
    }

    #[test]
    fn country_breaks_ties_between_equal_interest_counts() {
        let mut m = matcher();
        let mut older = ticket(1, Mode::Video, &[]);
        older.avoid = vec![Avoid { session: sid(2), until: None }];
        m.insert(older, 0, 0);
        let mut french = ticket(2, Mode::Video, &[]);
        french.country = Some("FR".into());
        m.insert(french, 1, 1);
        let mut me = ticket(3, Mode::Video, &[]);
        me.country = Some("FR".into());
        let pairs = m.insert(me, 2, 2);
        assert_eq!((pairs[0].first, pairs[0].second), (sid(2), sid(3)));
    }

    #[test]
    fn avoided_sessions_wait_out_the_cooldown_and_blocks_are_forever() {
        let mut m = matcher();
        let mut a = ticket(1, Mode::Video, &[]);
        a.avoid = vec![Avoid { session: sid(2), until: Some(60_000) }, Avoid { session: sid(3), until: None }];
        m.insert(a, 0, 0);
        let mut b = ticket(2, Mode::Video, &[]);
        b.avoid = vec![Avoid { session: sid(3), until: None }];
        assert!(m.insert(b, 1, 1).is_empty(), "1 and 2 are in cooldown, even as the only two waiting");
        assert!(m.insert(ticket(3, Mode::Video, &[]), 2, 2).is_empty(), "3 is blocked by both");
        assert_eq!(m.next_deadline(), Some(60_000));
        assert!(m.tick(59_999).is_empty());
        let pairs = m.tick(60_000);
        assert_eq!((pairs[0].first, pairs[0].second), (sid(1), sid(2)));
        assert!(m.contains(sid(3)));
        assert!(m.tick(10_000_000).is_empty());
    }

    #[test]
    fn removed_tickets_keep_their_place_when_reinserted() {
        let mut m = matcher();
        m.insert(ticket(1, Mode::Text, &["a"]), 0, 0);
        m.insert(ticket(2, Mode::Text, &["b"]), 1, 1);
        let w = m.remove(sid(1)).unwrap();
        assert_eq!(m.next_deadline(), Some(5_001), "the removed ticket's deadline is gone");
        m.insert(w.ticket, w.since, 2);
        let pairs = m.insert(ticket(3, Mode::Text, &["a", "b"]), 3, 3);
        assert_eq!(pairs[0].first, sid(1), "1 kept its original place ahead of 2");
    }

    #[test]
    fn a_ticket_replaced_in_place_keeps_its_arrival_order() {
        let mut m = matcher();
        // Same millisecond: arrival decides who waited longer.
        let apart = |n: u128, other: u128| Ticket {
            avoid: vec![Avoid { session: sid(other), until: None }],
            ..ticket(n, Mode::Text, &[])
        };
        m.insert(apart(1, 2), 7, 7);
        m.insert(apart(2, 1), 7, 7);
        // 2's ticket is renewed, then 1's: neither moves ahead of the other.
        m.insert(apart(2, 1), 7, 8);
        m.insert(apart(1, 2), 7, 8);
        let pairs = m.insert(ticket(3, Mode::Text, &[]), 9, 9);
        assert_eq!(pairs.len(), 1);
        assert_eq!((pairs[0].first, pairs[0].second), (sid(1), sid(3)));
    }

    #[test]
    fn state_survives_a_round_trip_through_its_waiting_tickets() {
        let mut m = matcher();
        m.insert(ticket(1, Mode::Video, &["a"]), 0, 0);
        m.insert(ticket(2, Mode::Text, &[]), 5, 5);
        let saved: Vec<Waiting> = m.waiting().cloned().collect();
        let (restored, pairs) = Matcher::from_waiting(m.config(), saved.clone(), 10);
        assert!(pairs.is_empty());
        assert_eq!(restored.waiting().cloned().collect::<Vec<_>>(), saved);
        assert_eq!(restored.next_deadline(), Some(5_000));
    }

    #[test]
    fn a_new_ticket_finds_its_partner_among_10_000_incompatible_ones() {
        let mut m = matcher();
        // Each insists on an interest nobody else has, as sockets flooding the queue would.
        for n in 0..10_000 {
            assert!(m.insert(ticket(n, Mode::Video, &[&format!("i{n}")]), 0, 0).is_empty());
        }
        assert_eq!(m.index_entries(), 10_000);
        let pairs = m.insert(ticket(20_000, Mode::Video, &["nobody", "i7777"]), 1, 1);
        assert_eq!(
            pairs,
            vec![Pair {
                first: sid(7777),
                second: sid(20_000),
                mode: Mode::Video,
                common_interests: vec!["i7777".into()]
            }]
        );
        // Without interests, nobody will do until their fallback.
        assert!(m.insert(ticket(20_001, Mode::Video, &[]), 2, 2).is_empty());
        assert_eq!(m.index_entries(), 10_000);
        // Then all fall back at once, and pair up oldest first.
        let pairs = m.tick(5_000);
        assert_eq!(pairs.len(), 5_000);
        assert_eq!((pairs[0].first, pairs[0].second), (sid(0), sid(1)));
        assert_eq!((pairs[4_999].first, pairs[4_999].second), (sid(9_999), sid(20_001)));
        assert!(m.is_empty());
        assert_eq!(m.index_entries(), 0);
        assert!(m.pools.is_empty() && m.deadlines.is_empty());
    }

    #[test]
    fn same_country_without_a_country_never_pairs() {
        let mut m = matcher();
        let lonely = Ticket { same_country: true, ..ticket(1, Mode::Text, &["music"]) };
        assert!(m.insert(lonely, 0, 0).is_empty());
        assert_eq!(m.index_entries(), 0, "filed nowhere");
        assert!(m.insert(ticket(2, Mode::Text, &["music"]), 1, 1).is_empty());
        assert!(m.tick(10_000).is_empty());
        let mut de = ticket(3, Mode::Text, &[]);
        de.country = Some("DE".into());
        let pairs = m.insert(de, 10_001, 10_001);
        assert_eq!((pairs[0].first, pairs[0].second), (sid(2), sid(3)));
        assert!(m.contains(sid(1)));
        assert_eq!(m.index_entries(), 0);
        m.remove(sid(1));
        assert!(m.is_empty() && m.pools.is_empty());
    }

    #[test]
    fn the_search_examines_at_most_max_candidates() {
        let mut m = matcher();
        let (x, z) = (1_000, 2_000);
        // More than the bound, all sharing X's interest but avoiding X, Z and each other.
        let crowd = MAX_CANDIDATES as u128 + 10;
        for n in 0..crowd {
            let avoid = (0..n).chain([x, z]).map(|s| Avoid { session: sid(s), until: None }).collect();
            assert!(m.insert(Ticket { avoid, ..ticket(n, Mode::Video, &["music"]) }, 0, 0).is_empty());
        }
        assert!(m.insert(ticket(z, Mode::Video, &["music"]), 0, 0).is_empty());
        // X looks at the crowd, oldest first, and gives up before reaching Z.
        assert!(m.insert(ticket(x, Mode::Video, &["music"]), 1, 1).is_empty());
        assert!(m.compatible(sid(x), sid(z), 1), "the trade-off of the bound");
        // Once fewer stand in front of Z, X's next search finds it.
        for n in 0..20 {
            m.remove(sid(n));
        }
        let pairs = m.insert(ticket(x, Mode::Video, &["music"]), 1, 2);
        assert_eq!((pairs[0].first, pairs[0].second), (sid(z), sid(x)));
    }

    /// Every list in the indexes, checking none is empty.
    fn lists(m: &Matcher) -> usize {
        let shelf = |s: &Shelf| {
            assert!(s.by_country.values().all(|l| !l.is_empty()), "an empty country list is kept");
            usize::from(!s.anyone.is_empty()) + s.by_country.len()
        };
        let interests = |p: &Pool| {
            assert!(p.by_interest.values().all(|s| !s.is_empty()), "an empty interest shelf is kept");
            p.by_interest.values().map(shelf).sum::<usize>()
        };
        m.pools.values().map(|p| shelf(&p.open) + interests(p)).sum()
    }

    #[test]
    fn leaving_tickets_leave_no_empty_lists_behind() {
        let mut m = matcher();
        let mut stay = ticket(0, Mode::Text, &["stays"]);
        stay.country = Some("DE".into());
        m.insert(stay, 0, 0);
        assert_eq!((lists(&m), m.index_entries()), (2, 2), "under its interest: its country and anyone");
        for n in 1..100u128 {
            // Half insist on an interest, half are open at once.
            let interests = if n % 2 == 0 { vec![format!("x{n}"), "y".into()] } else { vec![] };
            let t =
                Ticket { interests, country: Some(format!("C{n}")), same_country: true, ..ticket(n, Mode::Text, &[]) };
            m.insert(t, n as Millis, n as Millis);
            assert!(lists(&m) > 2);
            m.remove(sid(n));
        }
        assert_eq!((lists(&m), m.index_entries()), (2, 2));
        m.tick(5_000);
        assert_eq!((lists(&m), m.index_entries()), (4, 4), "and on the open shelf");
        m.remove(sid(0));
        assert_eq!((lists(&m), m.index_entries()), (0, 0));
    }
}
