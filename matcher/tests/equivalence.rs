//! The indexed search against a scan of the whole pool: random call sequences on pools
//! smaller than the search bound give exactly the same pairs and the same state.

use matcher::{Avoid, Config, MAX_CANDIDATES, Matcher, Millis, Pair, Ticket, Waiting};
use proptest::prelude::*;
use protocol::{Mode, SessionId};
use std::collections::{BTreeMap, BTreeSet, HashMap};

const SESSIONS: u128 = 16;
const FALLBACK: Millis = 5_000;
const INTERESTS: [&str; 6] = ["music", "chess", "go", "art", "rust", "film"];
const COUNTRIES: [&str; 3] = ["DE", "FR", "JP"];

const _: () = assert!((SESSIONS as usize) < MAX_CANDIDATES, "the pools stay within the search bound");

fn sid(n: u128) -> SessionId {
    SessionId(uuid::Uuid::from_u128(n))
}

/// The matcher as it was before the search was indexed: every search scans the whole
/// pool of its mode, oldest first, and keeps the best score (the first among equals).
mod reference {
    use super::*;

    type Key = (Millis, u64);

    #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    struct Score {
        shared: usize,
        same_country: bool,
    }

    #[derive(Default)]
    pub struct FullScan {
        config: Config,
        pools: BTreeMap<Mode, BTreeMap<Key, Waiting>>,
        index: HashMap<SessionId, (Mode, Key)>,
        deadlines: BTreeSet<(Millis, SessionId)>,
        seq: u64,
    }

    impl FullScan {
        pub fn new(config: Config) -> Self {
            Self { config, ..Self::default() }
        }

        pub fn from_waiting(config: Config, waiting: Vec<Waiting>, now: Millis) -> (Self, Vec<Pair>) {
            let mut m = Self::new(config);
            let mut pairs = Vec::new();
            for w in waiting {
                pairs.extend(m.insert(w.ticket, w.since, now));
            }
            (m, pairs)
        }

        pub fn waiting(&self) -> impl Iterator<Item = &Waiting> {
            self.pools.values().flat_map(BTreeMap::values)
        }

        pub fn next_deadline(&self) -> Option<Millis> {
            self.deadlines.first().map(|&(t, _)| t)
        }

        pub fn insert(&mut self, ticket: Ticket, since: Millis, now: Millis) -> Vec<Pair> {
            let session = ticket.session;
            let kept = self.index.get(&session).filter(|(_, key)| key.0 == since).map(|&(_, key)| key);
            self.remove(session);
            let key = kept.unwrap_or_else(|| {
                self.seq += 1;
                (since, self.seq - 1)
            });
            let times: Vec<Millis> = self.deadline_times(&ticket, since).filter(|&t| t > now).collect();
            for t in times {
                self.deadlines.insert((t, session));
            }
            self.index.insert(session, (ticket.mode, key));
            self.pools.entry(ticket.mode).or_default().insert(key, Waiting { ticket, since });
            let mut pairs = self.tick(now);
            pairs.extend(self.try_match(session, now));
            pairs
        }

        pub fn remove(&mut self, session: SessionId) -> Option<Waiting> {
            let (mode, key) = self.index.remove(&session)?;
            let pool = self.pools.get_mut(&mode).unwrap();
            let waiting = pool.remove(&key).unwrap();
            if pool.is_empty() {
                self.pools.remove(&mode);
            }
            for t in self.deadline_times(&waiting.ticket, waiting.since) {
                self.deadlines.remove(&(t, session));
            }
            Some(waiting)
        }

        pub fn tick(&mut self, now: Millis) -> Vec<Pair> {
            let mut due = Vec::new();
            while let Some(&(t, session)) = self.deadlines.first() {
                if t > now {
                    break;
                }
                self.deadlines.pop_first();
                due.push(session);
            }
            due.sort_by_key(|s| self.index.get(s).map(|&(_, key)| key));
            due.dedup();
            due.into_iter().filter_map(|s| self.try_match(s, now)).collect()
        }

        fn get(&self, session: SessionId) -> Option<&Waiting> {
            let (mode, key) = self.index.get(&session)?;
            self.pools.get(mode)?.get(key)
        }

        fn try_match(&mut self, session: SessionId, now: Millis) -> Option<Pair> {
            let me = self.get(session)?;
            let mut best: Option<(Score, SessionId)> = None;
            for other in self.pools.get(&me.ticket.mode)?.values() {
                if other.ticket.session == session {
                    continue;
                }
                if let Some(score) = self.score(me, other, now)
                    && best.as_ref().is_none_or(|(b, _)| score > *b)
                {
                    best = Some((score, other.ticket.session));
                }
            }
            let (_, partner) = best?;
            let partner_first = self.index[&partner].1 < self.index[&session].1;
            let a = self.remove(session).unwrap();
            let b = self.remove(partner).unwrap();
            let (first, second) = if partner_first { (b, a) } else { (a, b) };
            let common_interests =
                first.ticket.interests.iter().filter(|i| second.ticket.interests.contains(i)).cloned().collect();
            Some(Pair {
                first: first.ticket.session,
                second: second.ticket.session,
                mode: first.ticket.mode,
                common_interests,
            })
        }

        fn score(&self, x: &Waiting, y: &Waiting, now: Millis) -> Option<Score> {
            let (a, b) = (&x.ticket, &y.ticket);
            if a.mode != b.mode {
                return None;
            }
            let avoids = |p: &Ticket, q: &Ticket| {
                p.avoid.iter().any(|v| v.session == q.session && v.until.is_none_or(|t| now < t))
            };
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

        fn strict(&self, w: &Waiting, now: Millis) -> bool {
            !w.ticket.interests.is_empty() && now < w.since.saturating_add(self.config.interest_fallback)
        }

        fn deadline_times(&self, ticket: &Ticket, since: Millis) -> impl Iterator<Item = Millis> + use<> {
            let fallback = (!ticket.interests.is_empty()).then(|| since.saturating_add(self.config.interest_fallback));
            let avoid_ends: Vec<Millis> = ticket.avoid.iter().filter_map(|a| a.until).collect();
            fallback.into_iter().chain(avoid_ends)
        }
    }
}

/// Where a joining ticket's wait starts.
#[derive(Clone, Debug)]
enum Since {
    Now,
    /// The session's current ticket's `since` (keeping its place), if it waits.
    Kept,
    /// This long ago (possibly past the interest fallback already).
    Ago(Millis),
}

#[derive(Clone, Debug)]
enum Op {
    Join {
        who: u128,
        video: bool,
        /// Indexes into `INTERESTS` (repeats dropped).
        interests: Vec<usize>,
        country: Option<usize>,
        /// Also without a country, which nobody can then meet.
        same_country: bool,
        avoid: Vec<(u128, Option<Millis>)>,
        since: Since,
    },
    Leave {
        who: u128,
    },
    /// Time passes and the matcher hears of it once (many deadlines may fall due
    /// together).
    Tick {
        ms: Millis,
    },
    /// Time passes unheard of; the next call catches up.
    Skip {
        ms: Millis,
    },
    /// The matcher is rebuilt from its saved waiting tickets.
    Restore,
}

fn duration() -> impl Strategy<Value = Millis> {
    prop_oneof![1u64..100, 1_000u64..7_000]
}

fn op() -> impl Strategy<Value = Op> {
    let since = prop_oneof![3 => Just(Since::Now), 2 => Just(Since::Kept), 1 => (0u64..8_000).prop_map(Since::Ago)];
    let avoid = proptest::collection::vec((0..SESSIONS, proptest::option::of(0u64..20_000)), 0..4);
    prop_oneof![
        8 => (0..SESSIONS, any::<bool>(), proptest::collection::vec(0..INTERESTS.len(), 0..4), proptest::option::of(0..COUNTRIES.len()), proptest::bool::weighted(0.3), avoid, since)
            .prop_map(|(who, video, interests, country, same_country, avoid, since)| Op::Join {
                who, video, interests, country, same_country, avoid, since,
            }),
        2 => (0..SESSIONS).prop_map(|who| Op::Leave { who }),
        2 => duration().prop_map(|ms| Op::Tick { ms }),
        1 => duration().prop_map(|ms| Op::Skip { ms }),
        1 => Just(Op::Restore),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_indexed_search_pairs_exactly_like_a_full_scan(ops in proptest::collection::vec(op(), 1..100)) {
        let config = Config { interest_fallback: FALLBACK };
        let mut m = Matcher::new(config);
        let mut r = reference::FullScan::new(config);
        let mut now: Millis = 10_000;
        // The time of the last call that let the matchers catch up with time.
        let mut settled = now;

        for op in ops {
            match op {
                Op::Join { who, video, interests, country, same_country, avoid, since } => {
                    let ticket = Ticket {
                        session: sid(who),
                        mode: if video { Mode::Video } else { Mode::Text },
                        interests: interests.iter().enumerate().filter(|&(n, i)| !interests[..n].contains(i)).map(|(_, &i)| INTERESTS[i].to_string()).collect(),
                        country: country.map(|c| COUNTRIES[c].to_string()),
                        same_country,
                        avoid: avoid.into_iter().map(|(s, d)| Avoid { session: sid(s), until: d.map(|d| now + d) }).collect(),
                    };
                    let since = match since {
                        Since::Now => now,
                        Since::Kept => r.waiting().find(|w| w.ticket.session == sid(who)).map_or(now, |w| w.since),
                        Since::Ago(ms) => now - ms,
                    };
                    prop_assert_eq!(m.insert(ticket.clone(), since, now), r.insert(ticket, since, now));
                    settled = now;
                }
                Op::Leave { who } => prop_assert_eq!(m.remove(sid(who)), r.remove(sid(who))),
                Op::Tick { ms } => {
                    now += ms;
                    prop_assert_eq!(m.tick(now), r.tick(now));
                    settled = now;
                }
                Op::Skip { ms } => now += ms,
                Op::Restore => {
                    let (m2, pairs) = Matcher::from_waiting(config, m.waiting().cloned().collect::<Vec<_>>(), now);
                    let (r2, expected) = reference::FullScan::from_waiting(config, r.waiting().cloned().collect(), now);
                    prop_assert_eq!(pairs, expected);
                    (m, r, settled) = (m2, r2, now);
                }
            }
            let waiting: Vec<Waiting> = m.waiting().cloned().collect();
            prop_assert_eq!(&waiting, &r.waiting().cloned().collect::<Vec<_>>());
            prop_assert_eq!(m.next_deadline(), r.next_deadline());
            prop_assert_eq!(m.len(), waiting.len());
            let bound: usize = waiting.iter().map(|w| 2 * (w.ticket.interests.len() + 1)).sum();
            prop_assert!(m.index_entries() <= bound, "{} index entries for {:?}", m.index_entries(), waiting);
            // Nobody waits while a compatible partner waits.
            for (i, a) in waiting.iter().enumerate() {
                for b in &waiting[i + 1..] {
                    prop_assert!(
                        !m.compatible(a.ticket.session, b.ticket.session, settled),
                        "{:?} and {:?} both wait at {}", a, b, settled
                    );
                }
            }
        }

        // Leaving takes everything out of the indexes.
        for n in 0..SESSIONS {
            m.remove(sid(n));
        }
        prop_assert!(m.is_empty());
        prop_assert_eq!(m.index_entries(), 0);
        prop_assert_eq!(m.next_deadline(), None);
    }
}
