//! The fallback transport's framing: the same messages as on `/ws`, with server-sent
//! events carrying the server's and POSTs carrying the client's.
//!
//! - `GET /sse` opens a connection. Its `text/event-stream` starts with an event
//!   [`STREAM_EVENT`] whose data is `{"key":"<key>"}`, then one event (type
//!   `message`) per server message, its data the message's JSON. Every event's id is
//!   `<key>.<n>` ([`event_id`]), n counting from 0.
//! - `POST /sse` carries a JSON array of client messages (or a single message); the
//!   connection's key goes in [`KEY_HEADER`], a batch number in [`BATCH_HEADER`] (a
//!   batch whose number is not above the last one taken is acknowledged and ignored,
//!   so a retry is never applied twice), and optionally `Last-Event-ID`, the id of the
//!   last event the client has (the server then keeps no replay for it). The client's
//!   first message is `hello`, as on `/ws?hello=1`. A POST, an empty batch `[]` too,
//!   is also the client's sign of life (a WebSocket's pong): a connection without one
//!   for the server's idle timeout (45 s by default) ends, so a client with nothing to
//!   say POSTs `[]` every 15 s.
//! - `GET /sse` with `Last-Event-ID: <key>.<n>` takes the connection's stream back
//!   and replays every event after n. When that cannot be done, the stream carries only
//!   a [`CLOSE_EVENT`] with code 1012: open a new connection and resume with `hello`.
//! - The server ends a connection with a [`CLOSE_EVENT`] whose data is
//!   `{"code":<u16>,"reason":"…"}`: the codes of `/ws`'s close frames ([`crate::close`]).
//! - Comment lines (`: keep-alive`) keep an idle stream alive through proxies.

/// The endpoint, for both directions.
pub const PATH: &str = "/sse";
/// The request header that names a connection in a POST.
pub const KEY_HEADER: &str = "x-stream-key";
/// The request header that numbers a POSTed batch.
pub const BATCH_HEADER: &str = "x-batch";
/// The first event's type: its data names the connection's key.
pub const STREAM_EVENT: &str = "stream";
/// The last event's type when the server ends a connection.
pub const CLOSE_EVENT: &str = "close";

/// The data of the [`STREAM_EVENT`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stream {
    pub key: String,
}

/// The data of a [`CLOSE_EVENT`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Close {
    pub code: u16,
    #[serde(default)]
    pub reason: String,
}

/// The id of a connection's `n`-th event.
pub fn event_id(key: &str, n: u64) -> String {
    format!("{key}.{n}")
}

/// `<key>.<n>` → (key, n).
pub fn parse_event_id(id: &str) -> Option<(&str, u64)> {
    let (key, n) = id.trim().rsplit_once('.')?;
    Some((key, n.parse().ok()?))
}

/// One server-sent event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// Its `id` field, if it had one.
    pub id: Option<String>,
    /// Its type (`message` when it named none).
    pub kind: String,
    pub data: String,
}

/// Splits a `text/event-stream` into events as its bytes arrive (the parts of the
/// format this transport uses: `id`, `event`, `data`, comments; `retry` is ignored).
#[derive(Debug, Default)]
pub struct Parser {
    buf: String,
}

impl Parser {
    /// Adds what arrived; returns the events it completed.
    pub fn push(&mut self, text: &str) -> Vec<Event> {
        self.buf.push_str(text);
        // A CRLF split across two reads is whole by now (a CR at the end waits).
        if self.buf.contains("\r\n") {
            self.buf = self.buf.replace("\r\n", "\n");
        }
        let mut events = Vec::new();
        while let Some(end) = self.buf.find("\n\n") {
            let block: String = self.buf.drain(..end + 2).collect();
            let mut event = Event { kind: "message".into(), ..Event::default() };
            let mut data = Vec::new();
            let mut any = false;
            for line in block.lines() {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "" => continue, // a comment
                    "id" => event.id = Some(value.to_string()),
                    "event" => event.kind = value.to_string(),
                    "data" => data.push(value),
                    _ => continue,
                }
                any = true;
            }
            if any && !data.is_empty() {
                event.data = data.join("\n");
                events.push(event);
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_round_trip() {
        assert_eq!(parse_event_id(&event_id("abc", 7)), Some(("abc", 7)));
        assert_eq!(parse_event_id(" abc.0 "), Some(("abc", 0)));
        assert_eq!(parse_event_id("abc"), None);
        assert_eq!(parse_event_id("abc.x"), None);
    }

    #[test]
    fn events_split_across_reads_come_out_whole() {
        let mut p = Parser::default();
        assert!(p.push("retry: 1000\nid: k.0\nevent: stream\nda").is_empty());
        let got = p.push("ta: {\"key\":\"k\"}\n\n: keep-alive\n\nid: k.1\ndata: {}\n\nid: k.2\n");
        assert_eq!(
            got,
            [
                Event { id: Some("k.0".into()), kind: "stream".into(), data: r#"{"key":"k"}"#.into() },
                Event { id: Some("k.1".into()), kind: "message".into(), data: "{}".into() },
            ]
        );
        assert_eq!(p.push("event: close\r\ndata: {\"code\":1012}\r\n\r\n")[0].kind, "close");
        // A CRLF blank line split between two reads still ends the event.
        assert!(p.push("data: a\r\n\r").is_empty());
        assert_eq!(p.push("\ndata: b\r\n\r\n").iter().map(|e| e.data.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    }
}
