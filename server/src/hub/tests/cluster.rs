//! Two nodes in one process over a shared in-memory backend: the two sides of a
//! match live on different nodes, and everything between them crosses the bus. This
//! is the shape the Redis backend takes; here it shows the core needs nothing more.

use super::*;
use crate::hub::backend::{Bus, Directory, Entry, Matchmaking, MemoryDirectory, MemoryMatchmaking, Paired, Resolved};
use crate::hub::model::Envelope;
use protocol::SignalPayload;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// What the nodes share, with one queue of answers per node.
struct World {
    directory: MemoryDirectory,
    owners: HashMap<SessionId, usize>,
    matchmaking: MemoryMatchmaking,
    answers: Vec<VecDeque<Resolved>>,
    deliveries: Vec<VecDeque<(SessionId, Envelope)>>,
    pairs: Vec<VecDeque<Paired>>,
}

impl World {
    /// Hands each new pair to the node that owns its first session.
    fn route_pairs(&mut self) {
        while let Some(p) = self.matchmaking.poll_paired() {
            let owner = self.owners[&p.pair.first];
            self.pairs[owner].push_back(p);
        }
    }
}

/// One node's view of the shared world.
struct View(Arc<Mutex<World>>, usize);

impl View {
    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.0.lock().unwrap()
    }
}

impl Directory for View {
    fn resolve(&mut self, conn: ConnId, ip: IpAddr, token: Option<ResumeToken>) {
        let mut w = self.world();
        w.directory.resolve(conn, ip, token);
        let answer = w.directory.poll_resolved().expect("the memory directory answers at once");
        w.answers[self.1].push_back(answer);
    }
    fn register(&mut self, session: SessionId, token: ResumeToken, ip: IpAddr) {
        let mut w = self.world();
        w.owners.insert(session, self.1);
        w.directory.register(session, token, ip);
    }
    fn unregister(&mut self, session: SessionId) {
        let mut w = self.world();
        w.owners.remove(&session);
        w.directory.unregister(session);
    }
    fn poll_resolved(&mut self) -> Option<Resolved> {
        let node = self.1;
        self.world().answers[node].pop_front()
    }
    fn tokens(&self) -> usize {
        self.world().directory.tokens()
    }
    fn addresses(&self) -> usize {
        self.world().directory.addresses()
    }
}

impl Bus for View {
    fn forward(&mut self, to: SessionId, envelope: Envelope) {
        let mut w = self.world();
        if let Some(&owner) = w.owners.get(&to) {
            w.deliveries[owner].push_back((to, envelope));
        }
    }
    fn poll_delivery(&mut self) -> Option<(SessionId, Envelope)> {
        let node = self.1;
        self.world().deliveries[node].pop_front()
    }
}

impl Matchmaking for View {
    fn submit(&mut self, entry: Entry, now: Millis) {
        let mut w = self.world();
        w.matchmaking.submit(entry, now);
        w.route_pairs();
    }
    fn withdraw(&mut self, session: SessionId) {
        self.world().matchmaking.withdraw(session);
    }
    fn tick(&mut self, now: Millis) {
        let mut w = self.world();
        w.matchmaking.tick(now);
        w.route_pairs();
    }
    fn next_deadline(&self) -> Option<Millis> {
        self.world().matchmaking.next_deadline()
    }
    fn poll_paired(&mut self) -> Option<Paired> {
        let node = self.1;
        self.world().pairs[node].pop_front()
    }
    fn waiting(&self, mode: Mode) -> usize {
        self.world().matchmaking.waiting(mode)
    }
    fn index_entries(&self) -> usize {
        self.world().matchmaking.index_entries()
    }
}

/// Two nodes and the frames each socket got.
struct Pairing {
    nodes: Vec<Node>,
    frames: HashMap<ConnId, Vec<ServerMsg>>,
    next_conn: u64,
}

impl Pairing {
    fn new() -> Self {
        let config = HubConfig::default();
        let world = Arc::new(Mutex::new(World {
            directory: MemoryDirectory::default(),
            owners: HashMap::new(),
            matchmaking: MemoryMatchmaking::new(matcher::Config::default()),
            answers: vec![VecDeque::new(); 2],
            deliveries: vec![VecDeque::new(); 2],
            pairs: vec![VecDeque::new(); 2],
        }));
        let bans = Arc::new(crate::bans::Bans::default());
        let nodes = (0..2)
            .map(|n| {
                let backend = Backend::new(
                    Box::new(View(world.clone(), n)),
                    Box::new(View(world.clone(), n)),
                    Box::new(View(world.clone(), n)),
                    bans.clone(),
                );
                // Each node makes its own ids: far apart, so they never collide.
                Node::new(config.clone(), backend, Box::new(SeqIds(n as u128 * 1_000_000)), UNIX_AT_ZERO)
            })
            .collect();
        Self { nodes, frames: HashMap::new(), next_conn: 0 }
    }

    /// Feeds `input` to node `n`, then lets every node take what the others sent it.
    fn input(&mut self, n: usize, input: Input) {
        let mut out = Vec::new();
        self.nodes[n].handle(input, 0, &mut out);
        for _ in 0..4 {
            for node in &mut self.nodes {
                node.poll(0, &mut out);
            }
        }
        for o in out {
            if let Output::Send { conn, frame } = o {
                match ServerMsg::from_json(frame.as_str()).unwrap() {
                    ServerMsg::Online(_) => {}
                    msg => self.frames.entry(conn).or_default().push(msg),
                }
            }
        }
    }

    fn connect(&mut self, n: usize) -> ConnId {
        self.next_conn += 1;
        let conn = ConnId(self.next_conn);
        self.input(n, Input::Connect { conn, ip: ip(n as u8 + 1), country: None, resume: None });
        assert!(matches!(self.take(conn)[..], [ServerMsg::Welcome { .. }]));
        conn
    }

    fn send(&mut self, n: usize, conn: ConnId, msg: ClientMsg) {
        self.input(n, Input::from_client(conn, msg));
    }

    fn take(&mut self, conn: ConnId) -> Vec<ServerMsg> {
        self.frames.remove(&conn).unwrap_or_default()
    }
}

#[test]
fn a_match_across_two_nodes_relays_buffers_at_the_receiver_and_ends_cleanly() {
    let mut c = Pairing::new();
    let (a, b) = (c.connect(0), c.connect(1));
    c.send(0, a, ClientMsg::Join(Preferences::new(Mode::Video)));
    c.send(1, b, ClientMsg::Join(Preferences::new(Mode::Video)));
    let [_, ServerMsg::Matched { match_id: id, role: Role::Offerer, .. }] = c.take(a)[..] else { panic!() };
    let [_, ServerMsg::Matched { match_id, role: Role::Answerer, .. }] = c.take(b)[..] else { panic!() };
    assert_eq!(match_id, id);
    assert_eq!((c.nodes[0].stats().in_match, c.nodes[1].stats().in_match), (1, 1));

    // a's offer waits in b's inbox, on b's node, until b is ready.
    let offer = SignalPayload::Offer { sdp: "v=0".into() };
    c.send(0, a, ClientMsg::Signal { match_id: id, payload: offer.clone(), generation: None });
    assert_eq!((c.nodes[0].stats().buffered_signals, c.nodes[1].stats().buffered_signals), (0, 1));
    assert!(c.take(b).is_empty());
    c.send(1, b, ClientMsg::Ready { match_id: id });
    assert_eq!(c.take(b), [ServerMsg::Signal { match_id: id, payload: offer, generation: None }]);
    c.send(1, b, ClientMsg::Chat { match_id: id, text: "hi from node 1".into() });
    assert_eq!(c.take(a), [ServerMsg::Chat { match_id: id, text: "hi from node 1".into() }]);

    // Away and back, then the end, all cross the bus.
    c.input(1, Input::Disconnect { conn: b });
    assert_eq!(c.take(a), [ServerMsg::PeerReconnecting { match_id: id }]);
    c.send(0, a, ClientMsg::Next);
    assert_eq!(c.take(a), [ServerMsg::Queued { mode: Mode::Video }]);
    assert_eq!((c.nodes[0].stats().in_match, c.nodes[1].stats().in_match), (0, 0));
}
