//! Moderation rules on the sans-IO node: the video gate, verdicts, corroboration,
//! reports from distinct addresses, and what a ban does to both sides of a match.

use super::*;
use protocol::{FrameOf, LeftReason, ReportReason, close};
use std::time::Duration;

fn gated() -> Harness {
    let moderation = protocol::Moderation {
        path: "/moderation/frame".into(),
        size: 224,
        first_ms: 4000,
        every_ms: [10_000, 30_000],
        gate: true,
    };
    Harness::new(HubConfig { moderation: Some(moderation), ..HubConfig::default() })
}

fn verdict(h: &mut Harness, c: &Client, of: FrameOf, match_id: Option<MatchId>, flagged: bool) {
    h.input(Input::Verdict { session: c.session, of, match_id, flagged });
}

#[test]
fn a_video_ticket_waits_for_a_clean_camera_and_text_never_does() {
    let mut h = gated();
    let (a, b) = (h.connect_from(ip(1)), h.connect_from(ip(2)));
    h.join_video(&a);
    h.join_video(&b);
    assert_eq!(h.stats().waiting, 0, "no ticket before a clean frame");
    verdict(&mut h, &a, FrameOf::Own, None, false);
    assert_eq!(h.stats().waiting, 1);
    h.silent(&a);
    // A frame of someone else's video does not clear one's own camera.
    verdict(&mut h, &b, FrameOf::Peer, None, false);
    assert_eq!(h.stats().waiting, 1);
    verdict(&mut h, &b, FrameOf::Own, None, false);
    let (id, ..) = h.matched(&a);
    assert_eq!(h.matched(&b).0, id);
    // Once cleared, the next search is not held.
    h.send(&a, ClientMsg::Next);
    assert!(matches!(h.first(a.conn), ServerMsg::Queued { .. }));
    assert_eq!(h.stats().waiting_video, 1);
    let (c, d) = (h.connect_from(ip(3)), h.connect_from(ip(4)));
    h.join(&c, Preferences::new(Mode::Text));
    h.join(&d, Preferences::new(Mode::Text));
    h.matched(&c);
}

#[test]
fn a_flagged_own_camera_bans_its_address_and_the_stranger_is_told() {
    let mut h = Harness::defaults();
    let (a, b) = (h.connect_from(ip(1)), h.connect_from(ip(2)));
    h.join_video(&a);
    h.join_video(&b);
    let (id, ..) = h.matched(&a);
    h.matched(&b);
    // A second session from the same address goes too; one from elsewhere stays.
    let same = h.connect_from(ip(1));
    verdict(&mut h, &a, FrameOf::Own, None, true);
    let ServerMsg::Banned { reason, until } = h.recv(a.conn) else { panic!("banned") };
    assert_eq!(reason, "nudity on camera");
    assert!(until.ends_with('Z'), "{until}");
    assert_eq!(h.closed.get(&a.conn), Some(&close::BANNED));
    assert_eq!(h.closed.get(&same.conn), Some(&close::BANNED));
    assert_eq!(h.recv(b.conn), ServerMsg::PeerLeft { match_id: id, reason: LeftReason::Banned });
    assert!(!h.closed.contains_key(&b.conn));
    assert!(h.metrics.contains(&Metric::MatchEnded(crate::hub::io::Ended::Banned)));
    // The banned session cannot be resumed.
    let (_, resumed) = h.resume(&a.token);
    assert!(!resumed, "its token died with it");
}

#[test]
fn one_viewers_flag_blurs_only_and_a_second_viewer_bans() {
    let mut h = Harness::defaults();
    let suspect = h.connect_from(ip(10));
    let (v1, v2) = (h.connect_from(ip(11)), h.connect_from(ip(12)));
    h.join_video(&suspect);
    h.join_video(&v1);
    let (m1, ..) = h.matched(&suspect);
    h.matched(&v1);
    for _ in 0..5 {
        verdict(&mut h, &v1, FrameOf::Peer, Some(m1), true);
    }
    h.silent(&suspect);
    h.send(&v1, ClientMsg::Stop);
    h.take(suspect.conn);
    h.send(&suspect, ClientMsg::Next);
    h.take(suspect.conn);
    h.join_video(&v2);
    let (m2, ..) = h.matched(&v2);
    h.take(suspect.conn);
    verdict(&mut h, &v2, FrameOf::Peer, Some(m2), true);
    assert!(matches!(h.first(suspect.conn), ServerMsg::Banned { .. }));
    assert_eq!(h.recv(v2.conn), ServerMsg::PeerLeft { match_id: m2, reason: LeftReason::Banned });
    assert!(!h.closed.contains_key(&v1.conn) && !h.closed.contains_key(&v2.conn));
}

#[test]
fn reports_ban_at_the_threshold_of_distinct_addresses() {
    let mut h =
        Harness::new(HubConfig { report_threshold: 2, rematch_cooldown: Duration::ZERO, ..HubConfig::default() });
    let target = h.connect_from(ip(20));
    let reporters = [h.connect_from(ip(21)), h.connect_from(ip(21)), h.connect_from(ip(22))];
    h.join(&target, Preferences::new(Mode::Text));
    for (n, r) in reporters.iter().enumerate() {
        h.join(r, Preferences::new(Mode::Text));
        let (id, ..) = h.matched(r);
        h.take(target.conn);
        h.send(r, ClientMsg::Report { match_id: id, reason: ReportReason::Spam });
        if n < 2 {
            assert!(!h.closed.contains_key(&target.conn), "banned after {} reports", n + 1);
            h.send(r, ClientMsg::Stop);
            h.take(target.conn);
            h.send(&target, ClientMsg::Next);
            h.take(target.conn);
        }
    }
    assert_eq!(h.closed.get(&target.conn), Some(&close::BANNED), "the second address bans");
}

#[test]
fn evidence_counted_on_other_nodes_adds_up_here() {
    use crate::bans::{Change, Mark};
    use crate::hub::backend::Event;
    let mut h =
        Harness::new(HubConfig { report_threshold: 3, rematch_cooldown: Duration::ZERO, ..HubConfig::default() });
    let mut shared = h.node.bans().subscribe();
    let target = h.connect_from(ip(30));
    // Two other nodes counted a report each: under the threshold.
    for by in [ip(31), ip(32)] {
        h.input(Input::Backend(Event::Marked(Mark { by, against: ip(30), flag: false })));
    }
    assert!(!h.closed.contains_key(&target.conn));
    assert!(shared.try_recv().is_err(), "learnt marks are not shared again");
    // A report made here is shared, and judged on everything counted: three addresses.
    let r = h.connect_from(ip(33));
    h.join(&target, Preferences::new(Mode::Text));
    h.join(&r, Preferences::new(Mode::Text));
    let (id, ..) = h.matched(&r);
    h.send(&r, ClientMsg::Report { match_id: id, reason: ReportReason::Spam });
    assert_eq!(h.closed.get(&target.conn), Some(&close::BANNED), "three addresses over the cluster");
    let Ok(Change::Added { ban, local: true }) = shared.try_recv() else { panic!("the ban, announced first") };
    assert_eq!(ban.strike, 1);
    assert_eq!(shared.try_recv().unwrap(), Change::Marked(Mark { by: ip(33), against: ip(30), flag: false }));

    // Marks that reach the threshold here only through other nodes ban here too (their
    // nodes each counted too few when they were made, at the same moment).
    let other = h.connect_from(ip(40));
    for by in [ip(41), ip(42), ip(43)] {
        h.input(Input::Backend(Event::Marked(Mark { by, against: ip(40), flag: false })));
    }
    assert_eq!(h.closed.get(&other.conn), Some(&close::BANNED));
}
