//! The tokio shell around the node: it owns the socket handles, the clock, the timer
//! and the metric exporter, and carries out what the core asks.
//!
//! Socket tasks call into the node directly through a [`HubHandle`]: the node sits
//! behind a `std::sync::Mutex`, held only for one step (never across an `.await`), so
//! a message costs one lock and no hop through another task. A timer task wakes the
//! node when [`Node::poll_timeout`] says. A panic inside a step is caught: the hub is
//! marked failed, every later call answers [`HubGone`], and the server exits non-zero
//! (see [`HubHandle::failed`]) instead of holding sockets open to broken state.

use super::backend::Backend;
use super::backend::Event;
use super::config::HubConfig;
use super::conn::{Conn, SendError};
use super::core::{Counts, RandomIds};
use super::exporter::Metrics;
use super::io::{Input, Metric, Output};
use super::model::{ConnId, Frame};
use super::node::{HubStats, Node};
use crate::bans::{Ban, Bans, Mark};
use matcher::Millis;
use protocol::{FrameOf, MatchId, Mode, ResumeToken, SessionId, close};
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The moment a node's millisecond clock reads 0.
#[derive(Clone, Copy, Debug)]
pub struct Epoch {
    pub instant: Instant,
    /// The wall clock then, in Unix milliseconds.
    pub unix_ms: u64,
}

impl Epoch {
    pub fn now() -> Self {
        let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Self { instant: Instant::now(), unix_ms }
    }
}

/// The hub has stopped: the server is shutting down, or the hub failed.
#[derive(Debug, thiserror::Error)]
#[error("the hub has stopped")]
pub struct HubGone;

/// What one step did that the caller may want to know.
#[derive(Clone, Copy, Debug, Default)]
pub struct Step {
    /// A relayed message went out to its receiver at once.
    pub relayed_now: bool,
}

/// Cloneable handle on the running hub.
#[derive(Clone, Debug)]
pub struct HubHandle {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<ShellState>,
    /// Zero of the node's millisecond clock.
    epoch: Instant,
    /// Wakes the timer task when a step needs it earlier than it sleeps.
    wake: Notify,
    metrics: Metrics,
    /// Cancelled when the hub stops, for good.
    stopped: CancellationToken,
    /// The same, read on every step without the token's lock.
    halted: AtomicBool,
    /// Why the hub failed, if it did.
    failure: OnceLock<String>,
}

impl Shared {
    /// Records why the hub failed, asks every socket to reconnect, and stops.
    fn fail(&self, st: &ShellState, why: String) {
        tracing::error!("the hub failed: {why}");
        let _ = self.failure.set(why);
        for conn in st.conns.values() {
            conn.close(close::SERVICE_RESTART, "server restarting");
        }
        self.halt();
    }

    fn halt(&self) {
        self.halted.store(true, Ordering::Release);
        self.stopped.cancel();
    }
}

#[derive(Debug)]
struct ShellState {
    node: Node,
    conns: HashMap<ConnId, Conn>,
    /// Outputs of the current step (kept to reuse its allocation).
    out: Vec<Output>,
    /// When the timer task will wake the node.
    armed: Option<Millis>,
}

impl HubHandle {
    /// Starts the hub with the embedded in-memory backend (and a ban set of its own).
    pub fn start(config: HubConfig) -> Self {
        Self::start_in_memory(config, Default::default())
    }

    /// Starts the hub with the embedded in-memory backend, enforcing `bans`.
    pub fn start_in_memory(config: HubConfig, bans: Arc<Bans>) -> Self {
        let matching = matcher::Config { interest_fallback: config.interest_fallback.as_millis() as Millis };
        Self::start_with(config, Backend::memory(matching, bans))
    }

    /// Starts the hub on `backend`, and its timer task.
    pub fn start_with(config: HubConfig, backend: Backend) -> Self {
        Self::start_at(config, backend, Epoch::now())
    }

    /// [`HubHandle::start_with`], with the node's clock reading 0 at `epoch` (a
    /// backend that shares times with other processes needs to know it).
    pub fn start_at(config: HubConfig, backend: Backend, epoch: Epoch) -> Self {
        let node = Node::new(config, backend, Box::new(RandomIds::from_os()), epoch.unix_ms / 1000);
        let shared = Arc::new(Shared {
            state: Mutex::new(ShellState { node, conns: HashMap::new(), out: Vec::new(), armed: None }),
            epoch: epoch.instant,
            wake: Notify::new(),
            metrics: Metrics::new(),
            stopped: CancellationToken::new(),
            halted: AtomicBool::new(false),
            failure: OnceLock::new(),
        });
        let handle = Self { shared };
        tokio::spawn(handle.clone().run_timer());
        handle
    }

    /// A socket opened: registers it and starts its session (or resumes one).
    /// `country` is its address's country, when the IP database knows it.
    pub fn connect(&self, conn: Conn, country: Option<String>, resume: Option<ResumeToken>) -> Result<(), HubGone> {
        let (id, ip) = (conn.id, conn.ip);
        self.step(move |st, now| {
            st.conns.insert(id, conn);
            st.node.handle(Input::Connect { conn: id, ip, country, resume }, now, &mut st.out);
        })
        .map(drop)
    }

    /// A message from socket `from`. Frames for `from` itself go into `replies` for
    /// its own task to write (no trip through its outbox) while its outbox is empty,
    /// so they still go out in order.
    pub fn input(&self, from: ConnId, input: Input, replies: &mut Vec<Frame>) -> Result<Step, HubGone> {
        self.step_for(Some((from, replies)), |st, now| st.node.handle(input, now, &mut st.out)).map(|((), step)| step)
    }

    /// A socket closed.
    pub fn disconnect(&self, conn: ConnId) -> Result<(), HubGone> {
        self.step(|st, now| {
            st.conns.remove(&conn);
            st.node.handle(Input::Disconnect { conn }, now, &mut st.out);
        })
        .map(drop)
    }

    /// Takes what a shared backend received for this node (envelopes and pairs from
    /// other nodes).
    pub fn poll_backend(&self) -> Result<(), HubGone> {
        self.step(|st, now| st.node.poll(now, &mut st.out)).map(drop)
    }

    /// The rest of the cluster's sessions, for the online counts.
    pub fn set_other_nodes(&self, counts: protocol::OnlineCounts) -> Result<(), HubGone> {
        self.step(|st, now| st.node.handle(Input::OtherNodes(counts), now, &mut st.out)).map(drop)
    }

    /// The session that `token` names, with a live socket on this node, and its
    /// current match: the sender of a sampled frame (see [`super::core::HubCore::frame_sender`]).
    #[allow(clippy::type_complexity)]
    pub fn frame_sender(
        &self,
        token: &ResumeToken,
    ) -> Result<Option<Result<(SessionId, Option<MatchId>), ()>>, HubGone> {
        self.step(|st, now| st.node.frame_sender(token, now)).map(|(found, _)| found)
    }

    /// A frame `session` sent was classified.
    pub fn verdict(
        &self,
        session: SessionId,
        of: FrameOf,
        match_id: Option<MatchId>,
        flagged: bool,
    ) -> Result<(), HubGone> {
        self.step(|st, now| st.node.handle(Input::Verdict { session, of, match_id, flagged }, now, &mut st.out))
            .map(drop)
    }

    /// A ban issued elsewhere (an operator, another node): its address's sessions go.
    pub fn banned(&self, ban: Ban) -> Result<(), HubGone> {
        self.step(|st, now| st.node.handle(Input::Backend(Event::Banned(ban)), now, &mut st.out)).map(drop)
    }

    /// Evidence another node counted (see [`Event::Marked`]).
    pub fn marked(&self, mark: Mark) -> Result<(), HubGone> {
        self.step(|st, now| st.node.handle(Input::Backend(Event::Marked(mark)), now, &mut st.out)).map(drop)
    }

    /// The ban set this hub enforces (shared with the accept loop).
    pub fn bans(&self) -> Result<Arc<Bans>, HubGone> {
        self.step(|st, _| st.node.bans().clone()).map(|(bans, _)| bans)
    }

    /// Tells every socket to reconnect (close 1012), for a graceful restart.
    pub fn drain(&self) {
        let _ = self.step(|st, now| st.node.handle(Input::Drain, now, &mut st.out));
    }

    /// Sizes of every table (walks every session: tests and diagnostics).
    pub fn stats(&self) -> Result<HubStats, HubGone> {
        self.step(|st, _| st.node.stats()).map(|(stats, _)| stats)
    }

    /// Cheap counts for `/healthz` and `/metrics`: (counts, waiting video, waiting text).
    pub fn counts(&self) -> Result<(Counts, usize, usize), HubGone> {
        self.step(|st, _| (st.node.counts(), st.node.waiting(Mode::Video), st.node.waiting(Mode::Text))).map(|(c, _)| c)
    }

    /// How long a relayed message took from the socket to its receiver's outbox.
    pub fn record_relay_latency(&self, d: Duration) {
        self.shared.metrics.relay_latency.record(d.as_secs_f64());
    }

    /// A message refused for its rate.
    pub fn count_rate_limited(&self) {
        self.shared.metrics.rate_limited.increment(1);
    }

    /// Resolves once the hub has stopped, for good; then [`HubHandle::failure`] says
    /// whether it failed.
    pub async fn failed(&self) {
        self.shared.stopped.cancelled().await;
    }

    /// Why the hub failed, if it did.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure.get().cloned()
    }

    /// Stops the hub for good because it cannot go on (a panic in a step, or a
    /// backend that has failed): every later call answers [`HubGone`], sockets are
    /// closed with 1012 so their clients reconnect elsewhere, and the server exits
    /// with `why`.
    pub fn fail(&self, why: impl Into<String>) {
        match self.shared.state.lock() {
            Ok(st) => self.shared.fail(&st, why.into()),
            Err(poisoned) => self.shared.fail(&poisoned.into_inner(), why.into()),
        }
    }

    /// Stops the timer task (the server is done).
    pub fn shutdown(&self) {
        self.shared.halt();
    }

    fn now(&self) -> Millis {
        Instant::now().saturating_duration_since(self.shared.epoch).as_millis() as Millis
    }

    /// Runs `f` on the state under the lock, then carries out its outputs. A panic in
    /// `f` fails the hub (see the module docs).
    fn step<R>(&self, f: impl FnOnce(&mut ShellState, Millis) -> R) -> Result<(R, Step), HubGone> {
        self.step_for(None, f)
    }

    /// [`HubHandle::step`], handing frames for the socket `own` to its caller.
    fn step_for<R>(
        &self,
        mut own: Option<(ConnId, &mut Vec<Frame>)>,
        f: impl FnOnce(&mut ShellState, Millis) -> R,
    ) -> Result<(R, Step), HubGone> {
        let shared = &*self.shared;
        if shared.halted.load(Ordering::Acquire) {
            return Err(HubGone);
        }
        let now = self.now();
        let mut guard = shared.state.lock().map_err(|_| HubGone)?;
        let st = &mut *guard;
        let result = match std::panic::catch_unwind(AssertUnwindSafe(|| f(st, now))) {
            Ok(r) => r,
            Err(panic) => {
                shared.fail(st, panic_message(&panic));
                return Err(HubGone);
            }
        };
        let mut step = Step::default();
        for output in st.out.drain(..) {
            match output {
                Output::Send { conn, frame } => {
                    let Some(c) = st.conns.get(&conn) else { continue };
                    if let Some((_, replies)) = own.as_mut().filter(|(id, _)| *id == conn)
                        && c.is_idle()
                    {
                        replies.push(frame);
                    } else if let Err(SendError::Full) = c.send(frame) {
                        tracing::info!(conn = conn.0, "closing a socket that does not read its messages");
                    }
                }
                Output::Close { conn, code, reason } => {
                    if let Some(c) = st.conns.get(&conn) {
                        c.close(code, reason);
                    }
                }
                Output::Metric(m) => {
                    if let Metric::Relayed { buffered: false, .. } = m {
                        step.relayed_now = true;
                    }
                    shared.metrics.record(m);
                }
                Output::Backend(_) => unreachable!("the node carries backend requests itself"),
            }
        }
        let next = st.node.poll_timeout();
        if next.is_some_and(|t| st.armed.is_none_or(|armed| t < armed)) {
            st.armed = next;
            shared.wake.notify_one();
        }
        Ok((result, step))
    }

    /// Wakes the node when it asked to be woken, until the hub stops.
    async fn run_timer(self) {
        loop {
            let Ok((deadline, _)) = self.step(|st, _| {
                st.armed = st.node.poll_timeout();
                st.armed
            }) else {
                return;
            };
            let sleep = async {
                match deadline {
                    Some(t) => tokio::time::sleep_until(self.shared.epoch + Duration::from_millis(t)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => {
                    if self.step(|st, now| st.node.timer(now, &mut st.out)).is_err() {
                        return;
                    }
                }
                _ = self.shared.wake.notified() => {}
                _ = self.shared.stopped.cancelled() => return,
            }
        }
    }

    /// Runs `f` as a step (tests of the failure path).
    #[cfg(test)]
    fn step_for_test(&self, f: impl FnOnce()) -> Result<(), HubGone> {
        self.step(|_, _| f()).map(drop)
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_in_a_step_fails_the_hub_and_every_later_call() {
        let hub = HubHandle::start(HubConfig::default());
        assert!(hub.stats().is_ok());
        assert!(hub.step_for_test(|| panic!("invariant broken")).is_err());
        assert_eq!(hub.failure().as_deref(), Some("invariant broken"));
        tokio::time::timeout(Duration::from_secs(1), hub.failed()).await.expect("failed() resolves");
        assert!(hub.stats().is_err(), "a failed hub answers nothing");
    }
}
