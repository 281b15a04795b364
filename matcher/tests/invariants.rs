//! Property tests: random event sequences against an independent oracle of the rules.

use matcher::{Avoid, Config, Matcher, Millis, Pair, Ticket};
use proptest::prelude::*;
use protocol::{Mode, SessionId};
use std::collections::HashMap;

const SESSIONS: u128 = 10;
const FALLBACK: Millis = 5_000;
const INTERESTS: [&str; 4] = ["music", "chess", "go", "art"];
const COUNTRIES: [&str; 2] = ["DE", "FR"];

fn sid(n: u128) -> SessionId {
    SessionId(uuid::Uuid::from_u128(n))
}

#[derive(Clone, Debug)]
enum Op {
    /// A session joins (or changes its preferences, keeping its place when `keep`).
    Join {
        who: u128,
        video: bool,
        interests: u8,
        country: Option<usize>,
        same_country: bool,
        avoid: Vec<(u128, Option<Millis>)>,
        keep: bool,
    },
    /// A session leaves the queue.
    Leave { who: u128 },
    /// Time passes.
    Wait { ms: Millis },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..SESSIONS, any::<bool>(), 0u8..16, proptest::option::of(0..COUNTRIES.len()), any::<bool>(),
              proptest::collection::vec((0..SESSIONS, proptest::option::of(1u64..20_000)), 0..3), any::<bool>())
            .prop_map(|(who, video, interests, country, same_country, avoid, keep)| Op::Join {
                who, video, interests, same_country: same_country && country.is_some(), country, avoid, keep,
            }),
        1 => (0..SESSIONS).prop_map(|who| Op::Leave { who }),
        2 => prop_oneof![1u64..100, 1_000u64..7_000].prop_map(|ms| Op::Wait { ms }),
    ]
}

/// The rules, written independently of the matcher's implementation.
fn may_pair(a: &(Ticket, Millis), b: &(Ticket, Millis), now: Millis) -> bool {
    let ((x, xs), (y, ys)) = (a, b);
    let avoids =
        |p: &Ticket, q: &Ticket| p.avoid.iter().any(|v| v.session == q.session && v.until.is_none_or(|u| now < u));
    let strict = |t: &Ticket, since: Millis| !t.interests.is_empty() && now < since + FALLBACK;
    let shares = x.interests.iter().any(|i| y.interests.contains(i));
    x.session != y.session
        && x.mode == y.mode
        && !avoids(x, y)
        && !avoids(y, x)
        && (!x.same_country || (x.country.is_some() && x.country == y.country))
        && (!y.same_country || (y.country.is_some() && y.country == x.country))
        && (shares || (!strict(x, *xs) && !strict(y, *ys)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_rules_hold_over_random_event_sequences(ops in proptest::collection::vec(op(), 1..80)) {
        let mut m = Matcher::new(Config { interest_fallback: FALLBACK });
        // The oracle's view of who waits, with what ticket, since when.
        let mut waiting: HashMap<SessionId, (Ticket, Millis)> = HashMap::new();
        let mut now: Millis = 0;

        let check_pairs = |pairs: Vec<Pair>, waiting: &mut HashMap<SessionId, (Ticket, Millis)>, now: Millis| {
            for p in pairs {
                prop_assert_ne!(p.first, p.second, "matched with themselves");
                let a = waiting.remove(&p.first);
                let b = waiting.remove(&p.second);
                prop_assert!(a.is_some() && b.is_some(), "a pair includes someone not waiting (removed or already matched): {:?}", p);
                let (a, b) = (a.unwrap(), b.unwrap());
                prop_assert!(may_pair(&a, &b, now), "pair breaks a preference: {:?} / {:?}", a, b);
                prop_assert!(a.1 <= b.1, "first is the longer waiting");
                let expected: Vec<String> = a.0.interests.iter().filter(|i| b.0.interests.contains(i)).cloned().collect();
                prop_assert_eq!(&p.common_interests, &expected);
            }
            Ok(())
        };

        for op in ops {
            match op {
                Op::Join { who, video, interests, country, same_country, avoid, keep } => {
                    let ticket = Ticket {
                        session: sid(who),
                        mode: if video { Mode::Video } else { Mode::Text },
                        interests: INTERESTS.iter().enumerate().filter(|(i, _)| interests & (1 << i) != 0).map(|(_, s)| s.to_string()).collect(),
                        country: country.map(|c| COUNTRIES[c].to_string()),
                        same_country,
                        avoid: avoid.into_iter().map(|(s, d)| Avoid { session: sid(s), until: d.map(|d| now + d) }).collect(),
                    };
                    let since = match (keep, waiting.get(&sid(who))) {
                        (true, Some((_, since))) => *since,
                        _ => now,
                    };
                    waiting.insert(sid(who), (ticket.clone(), since));
                    let pairs = m.insert(ticket, since, now);
                    check_pairs(pairs, &mut waiting, now)?;
                }
                Op::Leave { who } => {
                    let removed = m.remove(sid(who));
                    let expected = waiting.remove(&sid(who));
                    prop_assert_eq!(removed.is_some(), expected.is_some());
                }
                Op::Wait { ms } => {
                    // The caller's duty: tick at every deadline on the way.
                    let target = now + ms;
                    while let Some(d) = m.next_deadline().filter(|&d| d <= target) {
                        now = now.max(d);
                        let pairs = m.tick(now);
                        check_pairs(pairs, &mut waiting, now)?;
                    }
                    now = target;
                    let pairs = m.tick(now);
                    check_pairs(pairs, &mut waiting, now)?;
                }
            }
            // Nobody waits while a compatible partner waits.
            let all: Vec<_> = waiting.values().collect();
            for (i, a) in all.iter().enumerate() {
                for b in &all[i + 1..] {
                    prop_assert!(!may_pair(a, b, now), "{:?} and {:?} both wait at {}", a, b, now);
                }
            }
            prop_assert_eq!(m.len(), waiting.len());
            for s in waiting.keys() {
                prop_assert!(m.contains(*s));
            }
        }
    }
}
