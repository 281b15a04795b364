//! The cluster's Redis schema, shared by the server nodes and the matcher service.
//!
//! Every key lives under `lm:`:
//! - `lm:node:{node}`: a node's heartbeat, `"{sessions} {chatting}"`, expiring after
//!   [`NODE_TTL`] unless renewed; `lm:nodes` is the set of node ids that ever beat
//!   (members whose heartbeat lapsed are dead and get removed by whoever notices).
//! - `lm:inbox:{node}`: a stream of what reaches that node's sessions: envelopes
//!   (`k=env`) and pairs (`k=pair`). Its owner reads it from the last id it saw.
//! - `lm:session:{session}`: a hash of the node holding a session (`node`) and its
//!   resumable state (`state`, JSON), expiring after [`OWNER_TTL`] unless its node
//!   renews it. Only the holder writes it (compare-and-set in each script); another
//!   node takes it over only through its token.
//! - `lm:token:{token}`: the session a resume token names. Taken with GETDEL, so
//!   exactly one node wins a resume.
//! - `lm:ticket:{session}`: a waiting ticket ([`TicketRecord`] as JSON), expiring
//!   after [`TICKET_TTL`] unless its node renews it (a dead node's tickets vanish).
//! - `lm:queue:{mode}`: the waiting sessions of a mode, scored by arrival (Unix ms).
//! - `lm:tickets`: a stream of ticket changes (`op=put` with the record, `op=del`)
//!   that the active matcher follows.
//! - `lm:matcher:lease` (the active matcher's id, expiring) and `lm:matcher:epoch`
//!   (raised by every new holder): every pairing checks the epoch (fencing).
//! - `lm:cluster`: a random id the first node writes. A node that finds it gone or
//!   changed knows Redis lost its state (restarted empty) and writes its own back.
//!
//! Times in records are Unix milliseconds: processes share no monotonic clock.
//! The scripts compute some keys from their arguments, so the schema needs one Redis
//! instance (or a primary with replicas), not Redis Cluster.

use crate::{Millis, Pair, Ticket};
use protocol::{Mode, SessionId};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a node's heartbeat lives unless renewed (renewed every second).
pub const NODE_TTL: Duration = Duration::from_secs(5);
/// How long a session's record and token live unless renewed: a little over the
/// grace period plus a renewal interval, so a dead node's sessions stop being
/// resumable about when their peers give up on them.
pub const OWNER_TTL: Duration = Duration::from_secs(20);
/// How long a waiting ticket lives unless its node renews it.
pub const TICKET_TTL: Duration = Duration::from_secs(30);
/// How often a node renews its session records and tickets.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);
/// Approximate length an inbox or the ticket stream is trimmed to.
pub const STREAM_MAXLEN: usize = 100_000;

pub const NODES: &str = "lm:nodes";
pub const TICKETS: &str = "lm:tickets";
pub const LEASE: &str = "lm:matcher:lease";
pub const CLUSTER: &str = "lm:cluster";
pub const EPOCH: &str = "lm:matcher:epoch";

pub fn node_key(node: &str) -> String {
    format!("lm:node:{node}")
}

pub fn inbox_key(node: &str) -> String {
    format!("lm:inbox:{node}")
}

/// The prefix of session records (the scripts build the key from a session id).
pub const SESSION_PREFIX: &str = "lm:session:";

pub fn session_key(session: SessionId) -> String {
    format!("{SESSION_PREFIX}{}", session.0)
}

pub fn token_key(token: &str) -> String {
    format!("lm:token:{token}")
}

pub fn ticket_key(session: SessionId) -> String {
    format!("lm:ticket:{}", session.0)
}

pub fn queue_key(mode: Mode) -> String {
    format!("lm:queue:{}", mode.as_str())
}

/// Both queues (a ticket that changes mode leaves the other one).
pub fn queue_keys() -> [String; 2] {
    [queue_key(Mode::Video), queue_key(Mode::Text)]
}

/// A waiting ticket as stored. `seat` is what the owning node wants back with the
/// pair (opaque here).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TicketRecord {
    /// Avoid entries' ends are Unix ms.
    pub ticket: Ticket,
    /// Unix ms.
    pub since: Millis,
    /// The node that owns the session.
    pub node: String,
    pub seat: serde_json::Value,
}

/// A pair as the matcher hands it to the first session's node (`k=pair`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairRecord {
    pub pair: Pair,
    pub first: serde_json::Value,
    pub second: serde_json::Value,
    /// The node of the second session (where the first's node sends the match).
    #[serde(default)]
    pub second_node: Option<String>,
}

/// Field names of stream entries.
pub mod field {
    /// Inbox entries: what it is (`env` or `pair`).
    pub const KIND: &str = "k";
    /// Inbox entries: the receiving session (`env`).
    pub const TO: &str = "to";
    /// The JSON body.
    pub const DATA: &str = "d";
    /// Ticket stream: `put` or `del`.
    pub const OP: &str = "op";
    /// Ticket stream: the session.
    pub const SESSION: &str = "sid";
}

/// Takes the lease when nobody holds it and raises the epoch. An epoch that Redis
/// lost (restarted empty) starts again from the current Unix ms, so it still exceeds
/// every epoch handed out before: a matcher paused across the restart stays fenced.
/// KEYS: lease, epoch. ARGV: holder id, lease ms, Unix ms. Returns the new epoch, or 0.
pub const ACQUIRE: &str = r#"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('SET', KEYS[2], ARGV[3], 'NX')
  return redis.call('INCR', KEYS[2])
end
return 0
"#;

/// Renews the lease if this holder still has it and its epoch is current.
/// KEYS: lease, epoch. ARGV: holder id, lease ms, epoch. Returns 1 or 0.
pub const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

/// Gives up the lease if this holder has it. KEYS: lease. ARGV: holder id.
pub const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// Commits one pair, fenced: only under the current epoch, only if both tickets are
/// still exactly the ones paired and both their nodes alive. Takes both tickets out
/// and hands the pair to the first session's node.
/// KEYS: epoch, first ticket, second ticket, queue, first's inbox, first's node key,
/// second's node key.
/// ARGV: epoch, first's record, second's record, first id, second id, pair record,
/// inbox max length.
/// Returns `ok`, `fenced`, or `first`/`second` (that ticket is gone, changed, or its
/// node is dead; one that is gone or dead also leaves the queue).
pub const PAIR: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 'fenced'
end
local a = redis.call('GET', KEYS[2])
if a ~= ARGV[2] or redis.call('EXISTS', KEYS[6]) == 0 then
  if not a or a == ARGV[2] then redis.call('DEL', KEYS[2]); redis.call('ZREM', KEYS[4], ARGV[4]) end
  return 'first'
end
local b = redis.call('GET', KEYS[3])
if b ~= ARGV[3] or redis.call('EXISTS', KEYS[7]) == 0 then
  if not b or b == ARGV[3] then redis.call('DEL', KEYS[3]); redis.call('ZREM', KEYS[4], ARGV[5]) end
  return 'second'
end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[4], ARGV[5])
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[7], '*', 'k', 'pair', 'd', ARGV[6])
return 'ok'
"#;

/// Records that a node holds a session under a token, unless another node has taken
/// the session over. KEYS: session record, token key, replaced token's key (or the
/// token key again). ARGV: node, session id, ttl ms. Returns 1, or 0 if not ours.
pub const OWN: &str = r#"
local n = redis.call('HGET', KEYS[1], 'node')
if n and n ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'node', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
if KEYS[3] ~= KEYS[2] then redis.call('DEL', KEYS[3]) end
return 1
"#;

/// Saves a session's state if this node still holds it.
/// KEYS: session record. ARGV: node, state JSON, ttl ms. Returns 1 or 0.
pub const SAVE: &str = r#"
local n = redis.call('HGET', KEYS[1], 'node')
if n and n ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'node', ARGV[1], 'state', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"#;

/// Forgets a session this node held: its record if still ours, its token if it
/// still names it. KEYS: session record, token key. ARGV: node, session id.
pub const DISOWN: &str = r#"
if redis.call('HGET', KEYS[1], 'node') == ARGV[1] then redis.call('DEL', KEYS[1]) end
if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('DEL', KEYS[2]) end
return 1
"#;

/// Takes a session over through its token (GETDEL: one winner). KEYS: token key.
/// ARGV: the claiming node, the session record prefix. Returns {session id, the node
/// that held it, its state}, or nil when the token names nothing resumable.
pub const CLAIM: &str = r#"
local sid = redis.call('GETDEL', KEYS[1])
if not sid then return false end
local key = ARGV[2] .. sid
local state = redis.call('HGET', key, 'state')
if not state then return false end
local old = redis.call('HGET', key, 'node') or ''
redis.call('HSET', key, 'node', ARGV[1])
return {sid, old, state}
"#;

/// Delivers an envelope to the node that owns its receiver, if that node is alive.
/// KEYS: the receiver's session record. ARGV: envelope JSON, inbox max length,
/// receiver id. Returns 1, or 0 when nobody holds the receiver (gone) or its node is
/// dead.
pub const FORWARD: &str = r#"
local node = redis.call('HGET', KEYS[1], 'node')
if not node then return 0 end
if redis.call('EXISTS', 'lm:node:' .. node) == 0 then return 0 end
redis.call('XADD', 'lm:inbox:' .. node, 'MAXLEN', '~', ARGV[2], '*', 'k', 'env', 'to', ARGV[3], 'd', ARGV[1])
return 1
"#;

/// The current Unix time in milliseconds.
pub fn unix_ms() -> Millis {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as Millis)
}

/// Parses a stream id `ms-seq` into comparable parts.
pub fn parse_stream_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_json() {
        let session = SessionId(uuid::Uuid::from_u128(7));
        let record = TicketRecord {
            ticket: Ticket {
                session,
                mode: Mode::Text,
                interests: vec!["chess".into()],
                country: Some("DE".into()),
                same_country: true,
                avoid: vec![crate::Avoid { session, until: Some(1_700_000_000_000) }],
            },
            since: 1_700_000_000_001,
            node: "n1".into(),
            seat: serde_json::json!({"ip": "127.0.0.1"}),
        };
        let json = serde_json::to_string(&record).unwrap();
        assert_eq!(serde_json::from_str::<TicketRecord>(&json).unwrap(), record);
        assert_eq!(queue_key(Mode::Text), "lm:queue:text");
        assert_eq!(parse_stream_id("1700000000000-3"), Some((1_700_000_000_000, 3)));
        assert_eq!(parse_stream_id("junk"), None);
    }
}
