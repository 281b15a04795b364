//! The cost of one join (insert, then remove so that the pool keeps its size) against a
//! hostile pool of waiting tickets that cannot be paired with each other nor with the
//! joining one. Run with `cargo bench -p matcher`.

use matcher::{Avoid, Config, MAX_CANDIDATES, Matcher, Millis, Ticket};
use protocol::{Mode, SessionId};

fn main() {
    divan::main();
}

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];
const NOW: Millis = 1;
/// The joining session, the same for every iteration.
const FRESH: u128 = u128::MAX;

fn sid(n: u128) -> SessionId {
    SessionId(uuid::Uuid::from_u128(n))
}

fn ticket(n: u128, interests: &[&str], country: Option<&str>, same_country: bool) -> Ticket {
    Ticket {
        session: sid(n),
        mode: Mode::Video,
        interests: interests.iter().map(|s| s.to_string()).collect(),
        country: country.map(str::to_string),
        same_country,
        avoid: Vec::new(),
    }
}

/// An ordinary user: popular interests, a country it does not insist on.
fn fresh() -> Ticket {
    ticket(FRESH, &["music", "games", "movies"], Some("DE"), false)
}

fn filled(tickets: impl IntoIterator<Item = Ticket>) -> Matcher {
    let mut m = Matcher::new(Config::default());
    for t in tickets {
        assert!(m.insert(t, 0, 0).is_empty(), "the pool's tickets are mutually incompatible");
    }
    m
}

fn bench_join(bencher: divan::Bencher, mut m: Matcher, size: usize) {
    assert_eq!(m.len(), size);
    assert!(m.insert(fresh(), NOW, NOW).is_empty(), "nobody in the pool may be paired with the new ticket");
    m.remove(sid(FRESH));
    bencher.bench_local(|| {
        let pairs = m.insert(fresh(), NOW, NOW);
        m.remove(sid(FRESH));
        pairs
    });
}

/// Each insists on an interest of its own (K sockets flooding the queue).
#[divan::bench(args = SIZES)]
fn unique_interests(bencher: divan::Bencher, size: usize) {
    let m = filled((0..size as u128).map(|n| ticket(n, &[&format!("x{n}")], None, false)));
    bench_join(bencher, m, size);
}

/// All share the joining ticket's most popular interest but each insists on a country
/// of its own.
#[divan::bench(args = SIZES)]
fn popular_interest_other_countries(bencher: divan::Bencher, size: usize) {
    let m = filled((0..size as u128).map(|n| ticket(n, &["music"], Some(&format!("C{n}")), true)));
    bench_join(bencher, m, size);
}

/// As `popular_interest_other_countries`, but the oldest twice [`MAX_CANDIDATES`] share
/// the joining ticket's country and avoid it (and each other): the most candidates a
/// join examines.
#[divan::bench(args = SIZES)]
fn popular_interest_avoiding(bencher: divan::Bencher, size: usize) {
    let crowd = 2 * MAX_CANDIDATES as u128;
    let m = filled((0..size as u128).map(|n| {
        if n < crowd {
            let avoid = (0..n).chain([FRESH]).map(|s| Avoid { session: sid(s), until: None }).collect();
            Ticket { avoid, ..ticket(n, &["music"], Some("DE"), true) }
        } else {
            ticket(n, &["music"], Some(&format!("C{n}")), true)
        }
    }));
    bench_join(bencher, m, size);
}
