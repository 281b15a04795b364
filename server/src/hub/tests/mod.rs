//! The protocol's rules, checked on the node (core + in-memory backend) with fake
//! time and sequential ids: no sockets, no runtime, no sleeps. Timers fire at exactly
//! the millisecond the node asks for, so grace periods, fallbacks and cooldowns are
//! checked to the millisecond.

mod cluster;
mod hardening;
mod matching;
mod relay;
mod safety;
mod sessions;

use super::backend::Backend;
use super::config::HubConfig;
use super::core::IdSource;
use super::io::{Input, Metric, Output};
use super::model::ConnId;
use super::node::{HubStats, Node};
use matcher::Millis;
use protocol::{ClientMsg, MatchId, Mode, Preferences, ResumeToken, Role, ServerMsg, SessionId};
use std::collections::HashMap;
use std::net::IpAddr;
use uuid::Uuid;

/// Ids 1, 2, 3, … so that test output is stable.
struct SeqIds(u128);

impl IdSource for SeqIds {
    fn next_id(&mut self) -> Uuid {
        self.0 += 1;
        Uuid::from_u128(self.0)
    }
}

/// Unix time at the node's millisecond 0.
const UNIX_AT_ZERO: u64 = 1_700_000_000;

struct Harness {
    node: Node,
    now: Millis,
    next_conn: u64,
    /// Frames sent to each socket, not yet looked at (`online` pushes apart).
    frames: HashMap<ConnId, Vec<ServerMsg>>,
    online: HashMap<ConnId, Vec<protocol::OnlineCounts>>,
    closed: HashMap<ConnId, u16>,
    metrics: Vec<Metric>,
}

/// A connected client as the harness sees it.
#[derive(Clone, Debug)]
struct Client {
    conn: ConnId,
    session: SessionId,
    token: ResumeToken,
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, last])
}

impl Harness {
    fn new(config: HubConfig) -> Self {
        let matching = matcher::Config { interest_fallback: config.interest_fallback.as_millis() as Millis };
        let node = Node::new(config, Backend::memory(matching, Default::default()), Box::new(SeqIds(0)), UNIX_AT_ZERO);
        Self {
            node,
            now: 0,
            next_conn: 0,
            frames: HashMap::new(),
            online: HashMap::new(),
            closed: HashMap::new(),
            metrics: Vec::new(),
        }
    }

    fn defaults() -> Self {
        Self::new(HubConfig::default())
    }

    fn input(&mut self, input: Input) {
        let mut out = Vec::new();
        self.node.handle(input, self.now, &mut out);
        self.collect(out);
    }

    fn collect(&mut self, out: Vec<Output>) {
        for o in out {
            match o {
                Output::Send { conn, frame } => {
                    assert!(!self.closed.contains_key(&conn), "a frame for closed socket {conn:?}");
                    match ServerMsg::from_json(frame.as_str()).expect("the core sends valid frames") {
                        ServerMsg::Online(c) => self.online.entry(conn).or_default().push(c),
                        msg => self.frames.entry(conn).or_default().push(msg),
                    }
                }
                Output::Close { conn, code, .. } => {
                    self.closed.insert(conn, code);
                }
                Output::Metric(m) => self.metrics.push(m),
                Output::Backend(req) => panic!("the node keeps backend requests: {req:?}"),
            }
        }
    }

    /// Moves the clock to `now + ms`, firing every timer on its exact millisecond.
    fn advance(&mut self, ms: Millis) {
        let target = self.now + ms;
        while let Some(t) = self.node.poll_timeout().filter(|&t| t <= target) {
            self.now = self.now.max(t);
            let mut out = Vec::new();
            self.node.timer(self.now, &mut out);
            self.collect(out);
        }
        self.now = target;
    }

    fn open(&mut self, from: IpAddr, resume: Option<&ResumeToken>) -> (ConnId, ServerMsg) {
        self.open_in(from, None, resume)
    }

    /// Opens a socket from `from`, whose country the IP database says is `country`.
    fn open_in(&mut self, from: IpAddr, country: Option<&str>, resume: Option<&ResumeToken>) -> (ConnId, ServerMsg) {
        self.next_conn += 1;
        let conn = ConnId(self.next_conn);
        self.input(Input::Connect { conn, ip: from, country: country.map(String::from), resume: resume.cloned() });
        (conn, self.first(conn))
    }

    fn connect_from(&mut self, from: IpAddr) -> Client {
        self.connect_in(from, None)
    }

    /// A new session from `from`, located in `country` by the IP database.
    fn connect_in(&mut self, from: IpAddr, country: Option<&str>) -> Client {
        let (conn, welcome) = self.open_in(from, country, None);
        let ServerMsg::Welcome { session_id, resume_token, resumed: false, .. } = welcome else {
            panic!("expected a new session's welcome, got {welcome:?}")
        };
        Client { conn, session: session_id, token: resume_token }
    }

    fn connect(&mut self) -> Client {
        self.connect_from(ip(1))
    }

    /// Resumes `token` on a new socket; returns it and whether the session came back.
    fn resume(&mut self, token: &ResumeToken) -> (Client, bool) {
        let (conn, welcome) = self.open(ip(1), Some(token));
        let ServerMsg::Welcome { session_id, resume_token, resumed, .. } = welcome else {
            panic!("expected welcome, got {welcome:?}")
        };
        (Client { conn, session: session_id, token: resume_token }, resumed)
    }

    fn send(&mut self, c: &Client, msg: ClientMsg) {
        self.input(Input::from_client(c.conn, msg));
    }

    fn drop_conn(&mut self, c: &Client) {
        self.input(Input::Disconnect { conn: c.conn });
    }

    /// Everything sent to `conn` since the last look (`online` apart).
    fn take(&mut self, conn: ConnId) -> Vec<ServerMsg> {
        self.frames.remove(&conn).unwrap_or_default()
    }

    /// The first message sent to `conn` since the last look; the rest stay.
    fn first(&mut self, conn: ConnId) -> ServerMsg {
        let got = self.frames.get_mut(&conn).filter(|f| !f.is_empty()).expect("a message was sent");
        got.remove(0)
    }

    /// The one message sent to `conn` since the last look.
    fn recv(&mut self, conn: ConnId) -> ServerMsg {
        let mut got = self.take(conn);
        assert_eq!(got.len(), 1, "expected one message, got {got:?}");
        got.remove(0)
    }

    fn silent(&mut self, c: &Client) {
        assert_eq!(self.take(c.conn), [], "expected nothing for {c:?}");
    }

    fn join(&mut self, c: &Client, prefs: Preferences) {
        let mode = prefs.mode;
        self.send(c, ClientMsg::Join(prefs));
        assert_eq!(self.first(c.conn), ServerMsg::Queued { mode });
    }

    fn join_video(&mut self, c: &Client) {
        self.join(c, Preferences::new(Mode::Video));
    }

    /// Expects `matched` for `c`: (match id, role, common interests).
    fn matched(&mut self, c: &Client) -> (MatchId, Role, Vec<String>) {
        match self.recv(c.conn) {
            ServerMsg::Matched { match_id, role, common_interests, .. } => (match_id, role, common_interests),
            other => panic!("expected matched for {c:?}, got {other:?}"),
        }
    }

    /// Two clients matched in video mode: (offerer, answerer, match id).
    fn pair(&mut self) -> (Client, Client, MatchId) {
        let (a, b) = (self.connect(), self.connect());
        self.join_video(&a);
        self.join_video(&b);
        let (id, role, _) = self.matched(&a);
        assert_eq!((role, self.matched(&b)), (Role::Offerer, (id, Role::Answerer, vec![])));
        (a, b, id)
    }

    fn stats(&self) -> HubStats {
        self.node.stats()
    }
}

fn interests(mode: Mode, list: &[&str]) -> Preferences {
    Preferences { interests: list.iter().map(|s| s.to_string()).collect(), ..Preferences::new(mode) }
}
