//! Pairing, fallback, country, cooldown and block (protocol rule 5), to the millisecond.

use super::*;
use protocol::{ErrorCode, LeftReason};

#[test]
fn the_longer_waiter_offers_and_nobody_meets_themselves() {
    let mut h = Harness::defaults();
    let a = h.connect();
    h.join_video(&a);
    h.advance(60_000);
    h.silent(&a);
    assert_eq!(h.stats().waiting, 1, "alone in the queue, a is not paired with itself");
    let b = h.connect();
    h.join_video(&b);
    let (id, role, _) = h.matched(&a);
    assert_eq!(role, Role::Offerer);
    assert_eq!(h.matched(&b), (id, Role::Answerer, vec![]));
    assert_eq!(h.metrics.iter().filter(|m| matches!(m, Metric::MatchStarted(Mode::Video))).count(), 1);
    assert!(h.metrics.contains(&Metric::QueueWait(60_000)), "a waited exactly a minute");
    assert_eq!(h.stats().in_match, 2);
}

#[test]
fn video_and_text_are_never_paired() {
    let mut h = Harness::defaults();
    let (a, b) = (h.connect(), h.connect());
    h.join(&a, Preferences::new(Mode::Video));
    h.join(&b, Preferences::new(Mode::Text));
    h.advance(600_000);
    h.silent(&a);
    h.silent(&b);
    assert_eq!((h.stats().waiting, h.stats().waiting_video), (2, 1));
}

#[test]
fn interests_hold_out_until_the_fallback_to_the_millisecond() {
    let mut h = Harness::defaults();
    let (a, b) = (h.connect(), h.connect());
    h.join(&a, interests(Mode::Text, &["music"]));
    h.advance(1_000);
    h.join(&b, interests(Mode::Text, &["knitting"]));
    // a's fallback ends at 5,000 ms, b's at 6,000: they meet when the later one's ends.
    h.advance(4_999);
    h.silent(&a);
    h.advance(1);
    let (id, role, common) = h.matched(&a);
    assert_eq!((role, common), (Role::Offerer, vec![]));
    assert_eq!(h.matched(&b).0, id);
    assert_eq!(h.now, 6_000);
}

#[test]
fn a_shared_interest_beats_a_longer_wait() {
    let mut h = Harness::defaults();
    let (early, m1, m2) = (h.connect(), h.connect(), h.connect());
    h.join(&early, Preferences::new(Mode::Video));
    h.join(&m1, interests(Mode::Video, &["music", "chess"]));
    h.join(&m2, interests(Mode::Video, &["chess", "go"]));
    assert_eq!(h.matched(&m1).2, ["chess"]);
    assert_eq!(h.matched(&m2).2, ["chess"]);
    h.silent(&early);
}

fn in_country(c: &str, same: bool) -> Preferences {
    Preferences { country: Some(c.into()), same_country: same, ..Preferences::new(Mode::Video) }
}

#[test]
fn same_country_only_meets_the_same_country() {
    let mut h = Harness::defaults();
    let (de, fr, de2) = (h.connect(), h.connect(), h.connect());
    h.join(&de, in_country("DE", true));
    h.join(&fr, in_country("FR", false));
    h.advance(600_000);
    h.silent(&de);
    h.join(&de2, in_country("DE", false));
    // Each learns the country the other picked (the IP database knows neither).
    let ServerMsg::Matched { peer_country, .. } = h.recv(de.conn) else { panic!() };
    assert_eq!(peer_country.as_deref(), Some("DE"));
    let ServerMsg::Matched { peer_country, .. } = h.recv(de2.conn) else { panic!() };
    assert_eq!(peer_country.as_deref(), Some("DE"));
    h.silent(&fr);
}

#[test]
fn a_country_from_the_ip_database_is_told_only_when_both_insisted() {
    let mut h = Harness::defaults();
    let (a, b) = (h.connect_in(ip(1), Some("DE")), h.connect_in(ip(2), Some("FR")));
    h.join(&a, in_country("DE", false));
    h.join(&b, Preferences::new(Mode::Video));
    let ServerMsg::Matched { peer_country, .. } = h.recv(a.conn) else { panic!() };
    assert_eq!(peer_country, None, "b's country came from its address");
    let ServerMsg::Matched { peer_country, .. } = h.recv(b.conn) else { panic!() };
    assert_eq!(peer_country, None, "a picked DE, but its address says so too: not told");
    let (c, d) = (h.connect_in(ip(3), Some("FR")), h.connect_in(ip(4), Some("FR")));
    h.join(&c, in_country("FR", true));
    h.join(&d, in_country("FR", true));
    let ServerMsg::Matched { peer_country, .. } = h.recv(c.conn) else { panic!() };
    assert_eq!(peer_country.as_deref(), Some("FR"));
    let ServerMsg::Matched { peer_country, .. } = h.recv(d.conn) else { panic!() };
    assert_eq!(peer_country.as_deref(), Some("FR"));
}

#[test]
fn both_learn_the_country_only_when_both_insisted_on_it() {
    let mut h = Harness::defaults();
    let (a, b) = (h.connect(), h.connect());
    h.join(&a, in_country("DE", true));
    h.join(&b, in_country("DE", true));
    let ServerMsg::Matched { peer_country, .. } = h.recv(a.conn) else { panic!() };
    assert_eq!(peer_country.as_deref(), Some("DE"));
    let ServerMsg::Matched { peer_country, .. } = h.recv(b.conn) else { panic!() };
    assert_eq!(peer_country.as_deref(), Some("DE"));
}

#[test]
fn the_connections_country_overrides_the_pick_under_same_country() {
    let mut h = Harness::defaults();
    // Both pick Germany, but their addresses say Germany and France.
    let de = h.connect_in(ip(1), Some("DE"));
    let fr = h.connect_in(ip(2), Some("FR"));
    h.join(&de, in_country("DE", true));
    h.join(&fr, in_country("DE", true));
    h.advance(600_000);
    h.silent(&de);
    h.silent(&fr);
    assert_eq!(h.stats().waiting, 2);
    // Without the insistence, the same two meet at once.
    h.join(&de, in_country("DE", false));
    h.join(&fr, in_country("DE", false));
    let (id, _, _) = h.matched(&de);
    assert_eq!(h.matched(&fr).0, id);
}

#[test]
fn an_address_the_database_does_not_know_falls_back_to_the_pick() {
    let mut h = Harness::defaults();
    let private = h.connect_in("10.0.0.7".parse().unwrap(), None);
    let de = h.connect_in(ip(2), Some("DE"));
    let fr = h.connect_in(ip(3), Some("FR"));
    h.join(&fr, in_country("FR", true));
    h.join(&private, in_country("DE", true));
    h.silent(&private);
    h.join(&de, in_country("DE", true));
    let (id, _, _) = h.matched(&private);
    assert_eq!(h.matched(&de).0, id);
    h.silent(&fr);
}

#[test]
fn welcome_names_the_connections_country_to_that_client_only() {
    let mut h = Harness::defaults();
    let (_, welcome) = h.open_in(ip(1), Some("DE"), None);
    assert!(matches!(welcome, ServerMsg::Welcome { country: Some(ref c), .. } if c == "DE"), "{welcome:?}");
    let (_, welcome) = h.open_in(ip(2), None, None);
    assert!(matches!(welcome, ServerMsg::Welcome { country: None, .. }), "{welcome:?}");
}

#[test]
fn next_keeps_the_two_apart_for_exactly_the_cooldown() {
    let mut h = Harness::defaults();
    let (a, b, id) = h.pair();
    h.advance(1_000);
    h.send(&a, ClientMsg::Next);
    assert_eq!(h.take(a.conn), [ServerMsg::Queued { mode: Mode::Video }]);
    assert_eq!(h.recv(b.conn), ServerMsg::PeerLeft { match_id: id, reason: LeftReason::Skipped });
    h.send(&b, ClientMsg::Next);
    assert_eq!(h.take(b.conn), [ServerMsg::Queued { mode: Mode::Video }]);
    // The cooldown runs from the skip at 1,000 ms for 60,000 ms.
    h.advance(59_999);
    h.silent(&a);
    h.advance(1);
    let (again, _, _) = h.matched(&a);
    assert_ne!(again, id);
    assert_eq!(h.matched(&b).0, again);
    assert_eq!(h.now, 61_000);
}

#[test]
fn stop_sets_no_cooldown_and_leaves_the_queue() {
    let mut h = Harness::defaults();
    let (a, b, id) = h.pair();
    h.send(&a, ClientMsg::Stop);
    assert_eq!(h.recv(b.conn), ServerMsg::PeerLeft { match_id: id, reason: LeftReason::Stopped });
    h.silent(&a);
    h.join_video(&a);
    h.join_video(&b);
    let (again, _, _) = h.matched(&a);
    assert_eq!(h.matched(&b).0, again);
    h.send(&a, ClientMsg::Stop);
    h.send(&a, ClientMsg::Next);
    h.take(a.conn);
    h.send(&a, ClientMsg::Stop);
    assert_eq!(h.stats().waiting, 0, "stop while queued leaves the queue");
}

#[test]
fn block_ends_the_match_without_requeueing_and_holds_forever() {
    let mut h = Harness::defaults();
    let (a, b, id) = h.pair();
    h.send(&a, ClientMsg::Block { match_id: id });
    assert_eq!(h.recv(b.conn), ServerMsg::PeerLeft { match_id: id, reason: LeftReason::Skipped });
    h.silent(&a);
    assert_eq!(h.stats().waiting, 0);
    assert!(h.metrics.contains(&Metric::MatchEnded(super::super::io::Ended::Blocked)));
    h.send(&a, ClientMsg::Next);
    h.send(&b, ClientMsg::Next);
    h.take(a.conn);
    h.take(b.conn);
    h.advance(24 * 3_600_000);
    h.silent(&a);
    let c = h.connect();
    h.join_video(&c);
    assert_eq!(h.matched(&a).0, h.matched(&c).0, "the longest waiter meets the newcomer");
}

#[test]
fn blocking_the_last_match_holds_while_both_wait() {
    let mut h = Harness::defaults();
    let (a, b, id) = h.pair();
    h.send(&b, ClientMsg::Next);
    h.send(&a, ClientMsg::Next);
    h.take(a.conn);
    h.take(b.conn);
    h.send(&a, ClientMsg::Block { match_id: id });
    h.advance(600_000);
    h.silent(&a);
    h.silent(&b);
    let c = h.connect();
    h.join_video(&c);
    assert_eq!(h.matched(&b).0, h.matched(&c).0, "b waited longest");
}

#[test]
fn join_while_queued_replaces_the_preferences_and_keeps_the_place() {
    let mut h = Harness::defaults();
    let (a, b, c) = (h.connect(), h.connect(), h.connect());
    h.join(&a, interests(Mode::Text, &["go"]));
    h.join(&b, interests(Mode::Text, &["chess"]));
    h.advance(1_000);
    h.join(&a, interests(Mode::Text, &["chess"]));
    // a and b share an interest now; a's place (0 ms) is older, so a offers.
    assert_eq!(h.matched(&a).1, Role::Offerer);
    h.matched(&b);
    h.join(&c, Preferences::new(Mode::Text));
    h.send(&c, ClientMsg::Join(Preferences::new(Mode::Text)));
    assert_eq!(h.take(c.conn), [ServerMsg::Queued { mode: Mode::Text }], "the same join again changes nothing");
}

#[test]
fn out_of_state_commands_get_their_error_and_change_nothing() {
    let mut h = Harness::defaults();
    let fresh = h.connect();
    h.send(&fresh, ClientMsg::Next);
    assert!(matches!(h.recv(fresh.conn), ServerMsg::Error { code: ErrorCode::NotInMatch, .. }));
    let (a, _b, _) = h.pair();
    h.send(&a, ClientMsg::Join(Preferences::new(Mode::Text)));
    assert!(matches!(h.recv(a.conn), ServerMsg::Error { code: ErrorCode::NotAllowed, .. }));
    assert_eq!(h.stats().in_match, 2);
    assert!(h.metrics.contains(&Metric::ClientError(ErrorCode::NotAllowed)));
}

#[test]
fn a_pair_for_a_side_that_stopped_meanwhile_ends_on_both_sides() {
    // A cluster's matchmaker can pair a ticket its owner has just withdrawn.
    use crate::hub::backend::{Event, Paired, Seat};
    let mut h = Harness::defaults();
    let (gone, waiting) = (h.connect(), h.connect());
    h.join_video(&waiting);
    let pair =
        matcher::Pair { first: gone.session, second: waiting.session, mode: Mode::Video, common_interests: vec![] };
    let seat = |n| Seat { country: None, same_country: false, declared: None, ip: ip(n) };
    h.input(Input::Backend(Event::Paired(Paired { pair, first: seat(1), second: seat(1) })));
    h.silent(&gone);
    // `matched` then `peer_left`, in that order: never a match with nobody on the other side.
    let got = h.take(waiting.conn);
    let [ServerMsg::Matched { match_id, role: Role::Answerer, .. }, ServerMsg::PeerLeft { match_id: left, reason }] =
        &got[..]
    else {
        panic!("expected matched then peer_left, got {got:?}")
    };
    assert_eq!((left, *reason), (match_id, protocol::LeftReason::Stopped));
    assert_eq!(h.stats().in_match, 0);
}
