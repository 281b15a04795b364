//! Moderation on the client: when frames are sampled, what an answer means, the gate
//! before a video user's first pairing, and the blur over a flagged stranger.
//!
//! The rules here are plain functions and small state types, tested without a browser.
//! The browser side (`platform::browser::frames`) owns the timers, the canvas and the
//! requests: it asks [`Engine::sample_decision`] and [`Engine::gate_frame_wanted`]
//! before each frame and reports every answer through [`Engine::frame_judged`]. The
//! server's part of the contract is [`protocol::Moderation`] (from `welcome`) and
//! [`protocol::FrameVerdict`] (the answer to a frame).

use super::{Engine, Phase};
use crate::platform;
use leptos::prelude::*;
use protocol::{FrameOf, FrameVerdict, MatchId, Mode, Moderation, ReportReason};
use std::time::Duration;

/// A gate frame that was not classified (busy server, failed request) or was flagged
/// is sent again this much later, while the user is still queued.
pub const GATE_RETRY: Duration = Duration::from_secs(2);
/// A capture whose video shows no picture yet (the camera is still starting, the
/// stranger's first frame has not arrived) is tried again this soon.
pub const NOT_READY_RETRY: Duration = Duration::from_millis(300);
/// The shortest wait between two frames of one kind, whatever the server announces: a
/// zero would have the page send frames back to back.
const MIN_INTERVAL_MS: u32 = 250;

/// What came of one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Classified, nothing wrong.
    Clean,
    /// Classified as breaking the rules.
    Flagged,
    /// Not classified: the server was busy (`skipped`, 429, 503), refused it (401,
    /// 404, 409, ...) or the request failed. The frame is forgotten.
    Unjudged,
}

impl Outcome {
    /// The outcome of a 200 answer.
    pub fn of_verdict(verdict: FrameVerdict) -> Self {
        match verdict {
            FrameVerdict { skipped: true, .. } => Outcome::Unjudged,
            FrameVerdict { flagged: true, .. } => Outcome::Flagged,
            FrameVerdict { flagged: false, .. } => Outcome::Clean,
        }
    }
}

/// How long after a match starts (or after the stranger's video starts playing) the
/// first frame is taken: `unit` (in `0..1`, from the platform's random source) of
/// `first_ms`.
pub fn first_delay(plan: &Moderation, unit: f64) -> Duration {
    Duration::from_millis(scale(0, plan.first_ms, unit))
}

/// How long after one frame's answer the next frame of that kind is taken: between
/// `every_ms[0]` and `every_ms[1]`, at `unit` (in `0..1`) of the way. A range given
/// the wrong way round is read the right way round.
pub fn next_delay(plan: &Moderation, unit: f64) -> Duration {
    let [a, b] = plan.every_ms;
    let (low, high) = (a.min(b).max(MIN_INTERVAL_MS), a.max(b).max(MIN_INTERVAL_MS));
    Duration::from_millis(scale(low, high, unit))
}

/// `low + unit · (high − low)`, with `unit` clamped to `0..=1`.
fn scale(low: u32, high: u32, unit: f64) -> u64 {
    let unit = if unit.is_finite() { unit.clamp(0.0, 1.0) } else { 0.0 };
    u64::from(low) + (f64::from(high - low) * unit).round() as u64
}

/// Where one frame goes: the announced path with `?of=self`, or `?of=peer&match_id=…`.
pub fn frame_url(plan: &Moderation, of: FrameOf, match_id: Option<MatchId>) -> String {
    let sep = if plan.path.contains('?') { '&' } else { '?' };
    match (of, match_id) {
        (FrameOf::Peer, Some(id)) => format!("{}{sep}of=peer&match_id={id}", plan.path),
        (FrameOf::Peer, None) => format!("{}{sep}of=peer", plan.path),
        (FrameOf::Own, _) => format!("{}{sep}of=self", plan.path),
    }
}

/// What a due frame should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sample {
    /// Capture and send it, then plan the next one.
    Take,
    /// Not this time (our camera is off, the stranger is reconnecting); plan the next.
    Skip,
    /// Sampling for that match is over.
    Stop,
}

/// What [`decide`] looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampleContext {
    /// The server moderates (`welcome` carried a plan).
    pub moderated: bool,
    /// The current match, if it is a video match.
    pub video_match: Option<MatchId>,
    pub phase: Phase,
    /// The user turned the camera off: the stranger sees black, there is nothing to check.
    pub camera_off: bool,
}

/// Whether a frame of `of`, due for `match_id`, is taken now.
pub fn decide(of: FrameOf, match_id: MatchId, ctx: &SampleContext) -> Sample {
    let live = matches!(ctx.phase, Phase::Connecting | Phase::Connected | Phase::PeerReconnecting);
    if !ctx.moderated || ctx.video_match != Some(match_id) || !live {
        return Sample::Stop;
    }
    match of {
        FrameOf::Own if ctx.camera_off => Sample::Skip,
        // Their picture is frozen while their connection is away.
        FrameOf::Peer if ctx.phase == Phase::PeerReconnecting => Sample::Skip,
        _ => Sample::Take,
    }
}

/// The gate: with `gate` in the plan, the server keeps a video user's place in the
/// queue until one clean frame of their own camera has been classified. Passed once
/// for the session (a resume keeps it; a new session starts over).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gate {
    passed: bool,
}

impl Gate {
    /// Whether the gate has been passed in this session.
    pub fn passed(self) -> bool {
        self.passed
    }

    /// A `welcome`: a session the server did not know has not passed anything.
    pub fn welcomed(&mut self, resumed: bool) {
        if !resumed {
            self.passed = false;
        }
    }

    /// An answer to a frame of our own camera: one clean frame passes the gate.
    pub fn own_frame(&mut self, outcome: Outcome) {
        if outcome == Outcome::Clean {
            self.passed = true;
        }
    }

    /// Whether a frame for the gate is wanted now: the plan asks for the gate, it is
    /// not passed yet, and a video user is in the queue.
    pub fn wants_frame(self, plan: Option<&Moderation>, mode: Option<Mode>, phase: &Phase) -> bool {
        !self.passed && plan.is_some_and(|p| p.gate) && mode == Some(Mode::Video) && *phase == Phase::Waiting
    }
}

/// The stranger's video in the current match, as far as moderation goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Veil {
    /// Shown as it is.
    #[default]
    Clear,
    /// A frame was flagged: blurred, with the choice to show it or report.
    Hidden {
        /// The user reported the stranger from the veil.
        reported: bool,
    },
    /// The user chose to see it anyway: shown for the rest of the match.
    ShownAnyway,
}

impl Veil {
    /// A frame of the stranger was flagged.
    pub fn flagged(self) -> Self {
        match self {
            Veil::Clear => Veil::Hidden { reported: false },
            kept => kept,
        }
    }

    /// "Show anyway".
    pub fn show_anyway(self) -> Self {
        match self {
            Veil::Hidden { .. } => Veil::ShownAnyway,
            kept => kept,
        }
    }

    /// "Report" on the veil.
    pub fn reported(self) -> Self {
        match self {
            Veil::Hidden { .. } => Veil::Hidden { reported: true },
            kept => kept,
        }
    }

    /// Whether the stranger's video is blurred.
    pub fn hides(self) -> bool {
        matches!(self, Veil::Hidden { .. })
    }
}

impl Engine {
    // ----- moderation: questions and events from the platform ------------------------

    /// Whether a frame of `of`, due for `match_id`, is taken now.
    pub fn sample_decision(self, of: FrameOf, match_id: MatchId) -> Sample {
        let ctx = SampleContext {
            moderated: self.moderation.plan.with_untracked(Option::is_some),
            video_match: self
                .chat
                .current
                .with_untracked(|m| m.as_ref().filter(|m| m.mode == Mode::Video).map(|m| m.id)),
            phase: self.chat.phase.get_untracked(),
            camera_off: self.media.camera_off.get_untracked(),
        };
        decide(of, match_id, &ctx)
    }

    /// Whether the gate still wants a frame of our camera (we are queued for video
    /// and no own frame has been classified clean in this session).
    pub fn gate_frame_wanted(self) -> bool {
        let mode = self.chat.prefs.with_untracked(|p| p.as_ref().map(|p| p.mode));
        self.moderation.plan.with_untracked(|plan| {
            self.moderation.gate.get_value().wants_frame(plan.as_ref(), mode, &self.chat.phase.get_untracked())
        })
    }

    /// The answer to a frame: of our camera (`match_id` is the match it was taken in,
    /// if any), or of the stranger in `match_id`. A flagged stranger is blurred at once;
    /// an answer about a match that is over changes nothing.
    pub fn frame_judged(self, of: FrameOf, match_id: Option<MatchId>, outcome: Outcome) {
        match of {
            FrameOf::Own => self.moderation.gate.update_value(|g| g.own_frame(outcome)),
            FrameOf::Peer => {
                let current = self.chat.current.with_untracked(|m| m.as_ref().map(|m| m.id));
                if outcome == Outcome::Flagged && match_id.is_some() && match_id == current {
                    self.moderation.set_veil.update(|v| *v = v.flagged());
                }
            }
        }
    }

    // ----- moderation: actions --------------------------------------------------------

    /// "Show anyway": unblurs the stranger for the rest of this match.
    pub fn show_anyway(self) {
        self.moderation.set_veil.update(|v| *v = v.show_anyway());
    }

    /// "Report" on the blurred video: the usual report, for nudity.
    pub fn report_hidden(self) {
        if !self.moderation.veil.get_untracked().hides() {
            return;
        }
        self.report(ReportReason::Nudity);
        self.moderation.set_veil.update(|v| *v = v.reported());
    }

    // ----- moderation: internals ------------------------------------------------------

    /// We entered the queue: in video mode, a session that has not passed the gate
    /// sends frames of its camera until one is classified clean.
    pub(super) fn gate_if_needed(self) {
        if self.gate_frame_wanted() {
            platform::send_gate_frame(self);
        }
    }

    /// A video match started: sample both videos while it lasts, when the server moderates.
    pub(super) fn sample_match(self, match_id: MatchId) {
        if self.moderation.plan.with_untracked(Option::is_some) {
            platform::start_frames(self, match_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::LeftReason;

    fn plan(first_ms: u32, every_ms: [u32; 2], gate: bool) -> Moderation {
        Moderation { path: "/moderation/frame".into(), size: 224, first_ms, every_ms, gate }
    }

    fn id(n: u128) -> MatchId {
        MatchId(uuid::Uuid::from_u128(n))
    }

    #[test]
    fn the_first_frame_falls_within_first_ms_and_the_next_within_every_ms() {
        let p = plan(3_000, [20_000, 40_000], false);
        assert_eq!(first_delay(&p, 0.0), Duration::ZERO);
        assert_eq!(first_delay(&p, 0.5), Duration::from_millis(1_500));
        assert_eq!(first_delay(&p, 0.999_999), Duration::from_millis(3_000));
        assert_eq!(next_delay(&p, 0.0), Duration::from_millis(20_000));
        assert_eq!(next_delay(&p, 0.25), Duration::from_millis(25_000));
        assert_eq!(next_delay(&p, 1.0), Duration::from_millis(40_000));
        for i in 0..=100 {
            let unit = f64::from(i) / 100.0;
            assert!(first_delay(&p, unit) <= Duration::from_millis(3_000));
            let next = next_delay(&p, unit);
            assert!((Duration::from_millis(20_000)..=Duration::from_millis(40_000)).contains(&next), "{next:?}");
        }
    }

    #[test]
    fn odd_plans_and_odd_randomness_stay_in_bounds() {
        // Reversed range, zero intervals, random values out of range or not numbers.
        assert_eq!(next_delay(&plan(0, [40_000, 20_000], false), 0.0), Duration::from_millis(20_000));
        assert_eq!(next_delay(&plan(0, [0, 0], false), 0.5), Duration::from_millis(u64::from(MIN_INTERVAL_MS)));
        assert_eq!(first_delay(&plan(0, [0, 0], false), 0.7), Duration::ZERO);
        let p = plan(1_000, [1_500, 2_500], false);
        assert_eq!(first_delay(&p, 7.0), Duration::from_millis(1_000));
        assert_eq!(first_delay(&p, -1.0), Duration::ZERO);
        assert_eq!(next_delay(&p, f64::NAN), Duration::from_millis(1_500));
        assert_eq!(next_delay(&plan(0, [u32::MAX, u32::MAX], false), 1.0), Duration::from_millis(u64::from(u32::MAX)));
    }

    #[test]
    fn frames_go_to_the_announced_path_with_whose_frame_it_is() {
        let p = plan(0, [1, 2], false);
        assert_eq!(frame_url(&p, FrameOf::Own, None), "/moderation/frame?of=self");
        assert_eq!(frame_url(&p, FrameOf::Own, Some(id(1))), "/moderation/frame?of=self");
        assert_eq!(
            frame_url(&p, FrameOf::Peer, Some(id(0xab))),
            "/moderation/frame?of=peer&match_id=00000000-0000-0000-0000-0000000000ab"
        );
        let with_query = Moderation { path: "/m?v=2".into(), ..p };
        assert_eq!(frame_url(&with_query, FrameOf::Own, None), "/m?v=2&of=self");
    }

    #[test]
    fn answers_read_as_clean_flagged_or_forgotten() {
        assert_eq!(Outcome::of_verdict(FrameVerdict { flagged: false, skipped: false }), Outcome::Clean);
        assert_eq!(Outcome::of_verdict(FrameVerdict { flagged: true, skipped: false }), Outcome::Flagged);
        assert_eq!(Outcome::of_verdict(FrameVerdict { flagged: false, skipped: true }), Outcome::Unjudged);
        assert_eq!(Outcome::of_verdict(FrameVerdict { flagged: true, skipped: true }), Outcome::Unjudged);
    }

    #[test]
    fn frames_are_taken_only_in_the_current_video_match() {
        let ctx = |phase: Phase, video_match: Option<MatchId>| SampleContext {
            moderated: true,
            video_match,
            phase,
            camera_off: false,
        };
        let here = Some(id(1));
        for of in [FrameOf::Own, FrameOf::Peer] {
            assert_eq!(decide(of, id(1), &ctx(Phase::Connected, here)), Sample::Take);
            assert_eq!(decide(of, id(1), &ctx(Phase::Connecting, here)), Sample::Take);
            // Another match, a text match (no video match), or the match is over.
            assert_eq!(decide(of, id(2), &ctx(Phase::Connected, here)), Sample::Stop);
            assert_eq!(decide(of, id(1), &ctx(Phase::Connected, None)), Sample::Stop);
            for over in [Phase::Idle, Phase::Waiting, Phase::PeerLeft(LeftReason::Banned), Phase::Blocked] {
                assert_eq!(decide(of, id(1), &ctx(over, here)), Sample::Stop);
            }
            let banned = Phase::Banned { reason: "r".into(), until: "u".into() };
            assert_eq!(decide(of, id(1), &ctx(banned, here)), Sample::Stop);
            // A server that stopped moderating.
            let unmoderated = SampleContext { moderated: false, ..ctx(Phase::Connected, here) };
            assert_eq!(decide(of, id(1), &unmoderated), Sample::Stop);
        }
        // Our camera off: nothing of ours to check; the stranger's still counts.
        let off = SampleContext { camera_off: true, ..ctx(Phase::Connected, here) };
        assert_eq!(decide(FrameOf::Own, id(1), &off), Sample::Skip);
        assert_eq!(decide(FrameOf::Peer, id(1), &off), Sample::Take);
        // The stranger's picture is frozen while they reconnect; ours is not.
        assert_eq!(decide(FrameOf::Peer, id(1), &ctx(Phase::PeerReconnecting, here)), Sample::Skip);
        assert_eq!(decide(FrameOf::Own, id(1), &ctx(Phase::PeerReconnecting, here)), Sample::Take);
    }

    #[test]
    fn the_gate_wants_frames_until_one_is_clean_and_holds_for_the_session() {
        let gated = plan(0, [1, 2], true);
        let video = Some(Mode::Video);
        let mut gate = Gate::default();
        assert!(gate.wants_frame(Some(&gated), video, &Phase::Waiting));
        // Only while a video user waits, and only when the plan asks for it.
        assert!(!gate.wants_frame(Some(&gated), Some(Mode::Text), &Phase::Waiting));
        assert!(!gate.wants_frame(Some(&gated), video, &Phase::Idle));
        assert!(!gate.wants_frame(Some(&gated), video, &Phase::Connecting));
        assert!(!gate.wants_frame(Some(&plan(0, [1, 2], false)), video, &Phase::Waiting));
        assert!(!gate.wants_frame(None, video, &Phase::Waiting));
        // Busy server, failed request, flagged frame: still wanted (sent again later).
        for outcome in [Outcome::Unjudged, Outcome::Flagged] {
            gate.own_frame(outcome);
            assert!(gate.wants_frame(Some(&gated), video, &Phase::Waiting));
        }
        gate.own_frame(Outcome::Clean);
        assert!(gate.passed());
        assert!(!gate.wants_frame(Some(&gated), video, &Phase::Waiting));
        // Later frames, flagged or not, do not close it again.
        gate.own_frame(Outcome::Flagged);
        assert!(gate.passed());
        // A resume keeps it; a new session starts over.
        gate.welcomed(true);
        assert!(gate.passed());
        gate.welcomed(false);
        assert!(!gate.passed());
        assert!(gate.wants_frame(Some(&gated), video, &Phase::Waiting));
    }

    #[test]
    fn the_veil_hides_on_a_flag_and_show_anyway_lasts() {
        let v = Veil::default();
        assert!(!v.hides());
        assert_eq!(v.show_anyway(), Veil::Clear, "nothing to show anyway");
        assert_eq!(v.reported(), Veil::Clear, "nothing to report from");
        let hidden = v.flagged();
        assert_eq!(hidden, Veil::Hidden { reported: false });
        assert!(hidden.hides());
        assert_eq!(hidden.flagged(), hidden);
        let reported = hidden.reported();
        assert_eq!(reported, Veil::Hidden { reported: true });
        assert_eq!(reported.flagged(), reported, "a later flag keeps the report");
        let shown = reported.show_anyway();
        assert_eq!(shown, Veil::ShownAnyway);
        assert!(!shown.hides());
        assert_eq!(shown.flagged(), Veil::ShownAnyway, "shown for the rest of the match");
    }
}
