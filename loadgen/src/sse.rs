//! A client of the fallback transport ([`protocol::sse`]): server-sent events down on
//! one TCP connection, batched POSTs up on another kept alive, both from the session's
//! source address (so the server's per-address caps see one session as one address's
//! two sockets). Loopback only, like the rest of loadgen.
//!
//! A reader task decodes the event stream as its bytes arrive (chunked transfer
//! encoding and UTF-8 split anywhere, then [`protocol::sse::Parser`]) into a channel.
//! A poster task sends what [`SseClient::send`] queued, one POST at a time: whatever is
//! queued while a POST is in flight goes in the next one, as many messages as the
//! server takes in one ([`MAX_BATCH_MESSAGES`], [`MAX_BATCH_BYTES`]). Each POST
//! acknowledges the last event read (`Last-Event-ID`). A POST whose connection broke
//! before its answer is sent again with the same batch number on a new connection:
//! the server ignores a batch it already took.

use crate::client::tcp_connect;
use crate::http::{Head, complete_response, parse_head};
use anyhow::{Context, anyhow, bail};
use hdrhistogram::Histogram;
use protocol::sse::{self, Event, Parser};
use protocol::{ClientMsg, ServerMsg, SessionId};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Most messages the server takes in one POST.
pub const MAX_BATCH_MESSAGES: usize = 64;
/// The largest POST body the server takes by default (twice the largest frame).
pub const MAX_BATCH_BYTES: usize = 2 * protocol::limits::MAX_FRAME_BYTES;
/// A keep-alive connection idle this long is replaced rather than reused: the server
/// closes one that stays idle for its header timeout (10 s by default), and a request
/// racing that close would have to be sent again.
pub const KEEPALIVE_REUSE: Duration = Duration::from_secs(5);
/// Tries of one batch whose connection broke before its answer.
const POST_ATTEMPTS: usize = 3;
/// With nothing to send for this long, an empty batch tells the server the client is
/// alive (it ends connections without a POST for its idle timeout, 45 s by default).
const HEARTBEAT: Duration = Duration::from_secs(15);
/// Longest wait for one POST's answer (the server paces a connection's requests: 20/s
/// once a burst of 40 is spent).
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a batch is offered again while the server says its inbox is full (429).
const BUSY_RETRY_FOR: Duration = Duration::from_secs(5);
/// Events read and not yet taken by [`SseClient::recv`]; past that the reader waits
/// and the TCP window closes, as with an unread WebSocket.
const EVENT_BUFFER: usize = 256;
/// Bytes per read of the event stream.
const READ_BUFFER: usize = 8 * 1024;
/// Longest chunk-size or trailer line accepted.
const MAX_CHUNK_LINE: usize = 4 * 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A request the server answered with a status other than the one expected.
#[derive(Debug)]
pub struct Refused {
    pub what: &'static str,
    pub status: u16,
    /// The start of the answer's body.
    pub body: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} refused: HTTP {}", self.what, self.status)?;
        if !self.body.is_empty() {
            write!(f, " ({})", self.body)?;
        }
        Ok(())
    }
}

impl std::error::Error for Refused {}

fn refused(what: &'static str, status: u16, body: &[u8]) -> Refused {
    let body = String::from_utf8_lossy(body).chars().take(80).collect::<String>().trim().to_string();
    Refused { what, status, body }
}

/// Decodes `Transfer-Encoding: chunked` as the bytes arrive, however they are split.
#[derive(Debug, Default)]
pub struct Dechunker {
    state: Chunk,
    /// The chunk-size, chunk-end or trailer line read so far.
    line: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading a chunk-size line.
    #[default]
    Size,
    /// This many bytes of chunk data to come.
    Data(usize),
    /// The line end after a chunk's data.
    DataEnd,
    /// Trailer lines after the last chunk, up to an empty one.
    Trailers,
    /// The body is complete.
    Done,
}

impl Dechunker {
    /// Appends the payload in `input` to `out`; `true` once the body is complete
    /// (anything after its end is ignored).
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> anyhow::Result<bool> {
        while !input.is_empty() && self.state != Chunk::Done {
            if let Chunk::Data(left) = self.state {
                let n = left.min(input.len());
                out.extend_from_slice(&input[..n]);
                input = &input[n..];
                self.state = if n == left { Chunk::DataEnd } else { Chunk::Data(left - n) };
                continue;
            }
            // Every other state reads a line.
            let eol = input.iter().position(|&b| b == b'\n');
            let part = &input[..eol.unwrap_or(input.len())];
            if self.line.len() + part.len() > MAX_CHUNK_LINE {
                bail!("a chunk-size or trailer line over {MAX_CHUNK_LINE} bytes");
            }
            self.line.extend_from_slice(part);
            let Some(eol) = eol else { break };
            input = &input[eol + 1..];
            let line = std::mem::take(&mut self.line);
            let line = line.strip_suffix(b"\r").unwrap_or(&line);
            self.state = match self.state {
                Chunk::Size => {
                    let text = std::str::from_utf8(line).context("a chunk size that is not text")?;
                    let digits = text.split(';').next().unwrap_or_default().trim();
                    match usize::from_str_radix(digits, 16).with_context(|| format!("a bad chunk size {text:?}"))? {
                        0 => Chunk::Trailers,
                        n => Chunk::Data(n),
                    }
                }
                Chunk::DataEnd if line.is_empty() => Chunk::Size,
                Chunk::DataEnd => bail!("a chunk longer than its size"),
                Chunk::Trailers if line.is_empty() => Chunk::Done,
                other => other,
            };
        }
        Ok(self.state == Chunk::Done)
    }
}

/// Bytes to text for the event parser as they arrive: a UTF-8 sequence split between
/// reads waits for its end, and so does a final CR (its LF may come next, and the
/// parser only folds CRLF it sees whole).
#[derive(Debug, Default)]
pub struct TextDecoder {
    pending: Vec<u8>,
}

impl TextDecoder {
    pub fn decode(&mut self, bytes: &[u8]) -> anyhow::Result<String> {
        self.pending.extend_from_slice(bytes);
        let mut whole = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(e) => bail!("the event stream is not UTF-8 (byte {} of what is pending)", e.valid_up_to()),
        };
        if whole > 0 && self.pending[whole - 1] == b'\r' {
            whole -= 1;
        }
        let rest = self.pending.split_off(whole);
        let text = std::mem::replace(&mut self.pending, rest);
        String::from_utf8(text).context("the event stream is not UTF-8")
    }
}

/// How an event stream's body ends.
#[derive(Debug)]
enum Framing {
    Chunked(Dechunker),
    /// This many bytes are left (`Content-Length`).
    Length(usize),
    /// When the connection closes.
    Close,
}

/// An event stream's body to events, fed whatever each read returned.
#[derive(Debug)]
pub struct EventDecoder {
    framing: Framing,
    text: TextDecoder,
    parser: Parser,
    payload: Vec<u8>,
}

impl EventDecoder {
    fn new(framing: Framing) -> Self {
        Self { framing, text: TextDecoder::default(), parser: Parser::default(), payload: Vec::new() }
    }

    /// For a body with `Transfer-Encoding: chunked`.
    pub fn chunked() -> Self {
        Self::new(Framing::Chunked(Dechunker::default()))
    }

    /// For the body a response head announces.
    fn for_head(head: &Head) -> Self {
        match (head.chunked, head.content_length) {
            (true, _) => Self::chunked(),
            (false, Some(n)) => Self::new(Framing::Length(n)),
            (false, None) => Self::new(Framing::Close),
        }
    }

    /// The events `bytes` completed, and whether the body is over.
    pub fn feed(&mut self, bytes: &[u8]) -> anyhow::Result<(Vec<Event>, bool)> {
        self.payload.clear();
        let done = match &mut self.framing {
            Framing::Chunked(d) => d.feed(bytes, &mut self.payload)?,
            Framing::Length(left) => {
                let n = (*left).min(bytes.len());
                self.payload.extend_from_slice(&bytes[..n]);
                *left -= n;
                *left == 0
            }
            Framing::Close => {
                self.payload.extend_from_slice(bytes);
                false
            }
        };
        let text = self.text.decode(&self.payload)?;
        let events = if text.is_empty() { Vec::new() } else { self.parser.push(&text) };
        Ok((events, done))
    }
}

/// Takes the next POST's messages off the front of `queue`: as many as fit in
/// `max_messages` and a body of `max_bytes`, but always one (a message too big for
/// any batch goes alone, and the server refuses it as `/ws` would). The body (a JSON
/// array) and how many messages it holds.
pub fn take_batch(queue: &mut VecDeque<String>, max_messages: usize, max_bytes: usize) -> (String, usize) {
    let mut body = String::from("[");
    let mut count = 0;
    while let Some(next) = queue.front() {
        // This message, its comma, and the closing bracket.
        let grown = body.len() + usize::from(count > 0) + next.len() + 1;
        if count > 0 && (count >= max_messages || grown > max_bytes) {
            break;
        }
        if count > 0 {
            body.push(',');
        }
        body.push_str(next);
        queue.pop_front();
        count += 1;
    }
    body.push(']');
    (body, count)
}

/// What the POSTs of every fallback client of a run did.
#[derive(Debug, Default)]
pub struct PostStats {
    /// POSTs the server took (204).
    pub posts: AtomicU64,
    /// Messages in them.
    pub messages: AtomicU64,
    /// The most messages in one.
    pub largest: AtomicU64,
    /// TCP connections opened for POSTs.
    pub connections: AtomicU64,
    /// Batches sent again because their connection broke before the answer.
    pub resent: AtomicU64,
    /// Batches offered again because the server's inbox was full (429).
    pub busy: AtomicU64,
    /// Keep-alive connections replaced after [`KEEPALIVE_REUSE`] idle.
    pub replaced_idle: AtomicU64,
    /// From a batch's first try to its 204 (µs), server pacing included.
    pub answered: Mutex<Option<Histogram<u64>>>,
}

impl PostStats {
    fn record_answer(&self, took: Duration) {
        let micros = (took.as_micros() as u64).max(1);
        let _ = lock(&self.answered).get_or_insert_with(crate::scenarios::histogram).record(micros);
    }
}

/// Sends the queued messages, one POST at a time, on a keep-alive connection.
struct Poster {
    target: SocketAddr,
    host: String,
    source: Option<IpAddr>,
    key: String,
    /// The id of the last event read, for `Last-Event-ID`.
    acked: Arc<Mutex<Option<String>>>,
    /// The keep-alive connection and when it was last used.
    conn: Option<(TcpStream, Instant)>,
    batch: u64,
    answer: Vec<u8>,
    stats: Arc<PostStats>,
}

impl Poster {
    /// Until the client is dropped, or a batch cannot be delivered.
    async fn run(mut self, mut incoming: mpsc::UnboundedReceiver<String>) -> anyhow::Result<()> {
        let mut queue = VecDeque::new();
        loop {
            if queue.is_empty() {
                match tokio::time::timeout(HEARTBEAT, incoming.recv()).await {
                    Ok(Some(msg)) => queue.push_back(msg),
                    Ok(None) => return Ok(()),
                    Err(_) => {
                        self.batch += 1;
                        self.post("[]", 0).await?;
                        continue;
                    }
                }
            }
            while let Ok(msg) = incoming.try_recv() {
                queue.push_back(msg);
            }
            let (body, count) = take_batch(&mut queue, MAX_BATCH_MESSAGES, MAX_BATCH_BYTES);
            self.batch += 1;
            self.post(&body, count).await?;
        }
    }

    /// POSTs `body` (`count` messages) as the current batch until the server takes it.
    async fn post(&mut self, body: &str, count: usize) -> anyhow::Result<()> {
        let mut broken = 0;
        let started = Instant::now();
        let busy_until = started + BUSY_RETRY_FOR;
        loop {
            // Built for every try: the acknowledgement may have moved on.
            let request = self.request(body);
            let answer = tokio::time::timeout(POST_TIMEOUT, self.exchange(&request)).await;
            let status = match answer {
                Err(_) => {
                    self.conn = None;
                    bail!("no answer to POST {} in {POST_TIMEOUT:?}", sse::PATH);
                }
                Ok(Err(e)) => {
                    self.conn = None;
                    broken += 1;
                    if broken >= POST_ATTEMPTS {
                        return Err(e.context(format!("POST {} failed {broken} times", sse::PATH)));
                    }
                    self.stats.resent.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Ok(Ok(status)) => status,
            };
            match status {
                204 => {
                    self.stats.posts.fetch_add(1, Ordering::Relaxed);
                    self.stats.messages.fetch_add(count as u64, Ordering::Relaxed);
                    self.stats.largest.fetch_max(count as u64, Ordering::Relaxed);
                    self.stats.record_answer(started.elapsed());
                    return Ok(());
                }
                429 if Instant::now() < busy_until => {
                    self.stats.busy.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                _ => {
                    let head_len = parse_head(&self.answer).ok().flatten().map_or(0, |h| h.len);
                    return Err(refused("POST /sse", status, &self.answer[head_len..]).into());
                }
            }
        }
    }

    fn request(&self, body: &str) -> Vec<u8> {
        let ack = lock(&self.acked).as_ref().map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
        format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}: {}\r\n{}: {}\r\n{ack}\r\n{body}",
            sse::PATH,
            self.host,
            body.len(),
            sse::KEY_HEADER,
            self.key,
            sse::BATCH_HEADER,
            self.batch,
        )
        .into_bytes()
    }

    /// One request and its answer (left in `self.answer`) on the keep-alive connection,
    /// opening one first if there is none: the answer's status.
    async fn exchange(&mut self, request: &[u8]) -> anyhow::Result<u16> {
        if self.conn.as_ref().is_some_and(|(_, used)| used.elapsed() > KEEPALIVE_REUSE) {
            self.conn = None;
            self.stats.replaced_idle.fetch_add(1, Ordering::Relaxed);
        }
        let (tcp, used) = match &mut self.conn {
            Some(conn) => conn,
            None => {
                let tcp = tcp_connect(self.target, self.source).await?;
                self.stats.connections.fetch_add(1, Ordering::Relaxed);
                self.conn.insert((tcp, Instant::now()))
            }
        };
        tcp.write_all(request).await.context("sending a POST")?;
        self.answer.clear();
        let mut buf = [0u8; 2048];
        let (status, len) = loop {
            if let Some(done) = complete_response(&self.answer)? {
                break done;
            }
            let n = tcp.read(&mut buf).await.context("reading a POST's answer")?;
            if n == 0 {
                bail!("the server closed the POST connection before answering");
            }
            self.answer.extend_from_slice(&buf[..n]);
        };
        *used = Instant::now();
        let head = parse_head(&self.answer)?.context("a complete answer has a head")?;
        let closing = header_value(&self.answer[..head.len], "connection").is_some_and(|v| v.contains("close"));
        // Bytes past the answer (nothing was pipelined): the connection is confused.
        let confused = self.answer.len() > len;
        self.answer.truncate(len);
        if closing || confused {
            self.conn = None;
        }
        Ok(status)
    }
}

/// The value of header `name` in a response head, lowercased.
fn header_value(head: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(head).ok()?;
    text.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_ascii_lowercase())
    })
}

/// Aborts its task when dropped: a client's tasks end with it.
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `GET /sse` from `source`: the connection, how to decode the stream, and the bytes
/// of it that came with the head.
async fn open_stream(
    target: SocketAddr,
    host: &str,
    source: Option<IpAddr>,
) -> anyhow::Result<(TcpStream, EventDecoder, Vec<u8>)> {
    let mut tcp = tcp_connect(target, source).await?;
    let request = format!("GET {} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n", sse::PATH);
    tcp.write_all(request.as_bytes()).await.context("sending GET /sse")?;
    let mut buf = Vec::with_capacity(READ_BUFFER);
    let mut chunk = [0u8; 2048];
    let head = loop {
        if let Some(head) = parse_head(&buf)? {
            break head;
        }
        let n = tcp.read(&mut chunk).await.context("reading the event stream's head")?;
        if n == 0 {
            bail!("the server closed the connection before answering GET /sse");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if head.status != 200 {
        return Err(refused("GET /sse", head.status, &buf[head.len..]).into());
    }
    let kind = header_value(&buf[..head.len], "content-type").unwrap_or_default();
    if !kind.starts_with("text/event-stream") {
        bail!("GET /sse answered {kind:?}, not an event stream");
    }
    let decoder = EventDecoder::for_head(&head);
    Ok((tcp, decoder, buf.split_off(head.len)))
}

/// Reads the event stream into `events` until it ends (an `Err` says how) or the
/// client is gone. `first` is what came with the response head.
async fn read_events(
    mut tcp: TcpStream,
    mut decoder: EventDecoder,
    mut first: Vec<u8>,
    events: mpsc::Sender<anyhow::Result<Event>>,
    acked: Arc<Mutex<Option<String>>>,
) {
    let mut buf = vec![0u8; READ_BUFFER];
    let ending = loop {
        let input: &[u8] = if first.is_empty() {
            match tcp.read(&mut buf).await {
                Ok(0) => break anyhow!("the server closed the event stream's connection"),
                Ok(n) => &buf[..n],
                Err(e) => break anyhow::Error::from(e).context("reading the event stream"),
            }
        } else {
            &first
        };
        let (got, done) = match decoder.feed(input) {
            Ok(r) => r,
            Err(e) => break e,
        };
        first.clear();
        if !deliver(got, &events, &acked).await {
            return;
        }
        if done {
            break anyhow!("the server ended the event stream");
        }
    };
    let _ = events.send(Err(ending)).await;
}

/// Hands `got` to the client, noting the last id; `false` once the client is gone.
async fn deliver(
    got: impl IntoIterator<Item = Event>,
    events: &mpsc::Sender<anyhow::Result<Event>>,
    acked: &Mutex<Option<String>>,
) -> bool {
    for event in got {
        if let Some(id) = &event.id {
            *lock(acked) = Some(id.clone());
        }
        if events.send(Ok(event)).await.is_err() {
            return false;
        }
    }
    true
}

/// A protocol client on the fallback transport that has its `welcome`.
pub struct SseClient {
    pub session: SessionId,
    /// The resume token from `welcome` (a credential: never printed).
    pub resume_token: String,
    /// Whether `welcome` said this connection resumed an earlier session.
    pub resumed: bool,
    events: mpsc::Receiver<anyhow::Result<Event>>,
    outgoing: mpsc::UnboundedSender<String>,
    _reader: Task,
    _poster: Task,
}

impl SseClient {
    /// Opens the event stream from `source` (any port), says `hello` (a new session)
    /// in the first POST, and waits for `welcome`. `host` goes in the `Host` headers;
    /// `stats` counts the POSTs.
    pub async fn connect(
        target: SocketAddr,
        host: &str,
        source: Option<IpAddr>,
        stats: Arc<PostStats>,
    ) -> anyhow::Result<Self> {
        let (tcp, decoder, first) = open_stream(target, host, source).await?;
        let (events_tx, mut events) = mpsc::channel(EVENT_BUFFER);
        let acked = Arc::new(Mutex::new(None));
        let reader = Task(tokio::spawn(read_events(tcp, decoder, first, events_tx.clone(), acked.clone())));
        let opening = events.recv().await.context("the event stream ended at once")??;
        if opening.kind != sse::STREAM_EVENT {
            bail!("the event stream began with {:?}, not {:?}", opening.kind, sse::STREAM_EVENT);
        }
        let data: serde_json::Value = serde_json::from_str(&opening.data).context("the stream event's data")?;
        let key = data["key"].as_str().context("no key in the stream event")?.to_string();
        let poster = Poster {
            target,
            host: host.to_string(),
            source,
            key,
            acked,
            conn: None,
            batch: 0,
            answer: Vec::new(),
            stats,
        };
        let (outgoing, incoming) = mpsc::unbounded_channel();
        let poster = Task(tokio::spawn(async move {
            if let Err(e) = poster.run(incoming).await {
                // Told to the client through its next `recv`.
                let _ = events_tx.send(Err(e)).await;
            }
        }));
        let mut c = Self {
            session: SessionId(Default::default()),
            resume_token: String::new(),
            resumed: false,
            events,
            outgoing,
            _reader: reader,
            _poster: poster,
        };
        c.send(&ClientMsg::Hello { resume_token: None })?;
        match c.recv().await? {
            ServerMsg::Welcome { session_id, resume_token, resumed, .. } => {
                c.session = session_id;
                c.resume_token = resume_token.to_string();
                c.resumed = resumed;
            }
            other => bail!("first message was not welcome: {other:?}"),
        }
        Ok(c)
    }

    /// Queues `msg` for the next POST.
    pub fn send(&mut self, msg: &ClientMsg) -> anyhow::Result<()> {
        self.outgoing.send(msg.to_json()).map_err(|_| anyhow!("the POST sender has stopped (the next recv says why)"))
    }

    /// The next server message (`online` included).
    pub async fn recv(&mut self) -> anyhow::Result<ServerMsg> {
        loop {
            let event = self.events.recv().await.context("the event stream has ended")??;
            match event.kind.as_str() {
                "message" => return ServerMsg::from_json(&event.data).context("bad server message"),
                sse::CLOSE_EVENT => bail!("closed by the server: {}", event.data),
                _ => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{MatchId, OnlineCounts, ResumeToken};
    use std::collections::HashSet;
    use tokio::net::TcpListener;

    /// A chunked event stream: the stream event, messages with multi-byte text, a
    /// comment, CRLF line ends, chunk extensions and trailers.
    fn chunked_stream() -> (Vec<u8>, Vec<Event>) {
        let events = [
            "retry: 1000\nid: k.0\nevent: stream\ndata: {\"key\":\"k\"}\n\n".to_string(),
            "id: k.1\ndata: {\"type\":\"chat\",\"text\":\"héllo ✓ 🦀\"}\n\n".to_string(),
            ": keep-alive\n\n".to_string(),
            "id: k.2\r\ndata: line one\r\ndata: line two\r\n\r\n".to_string(),
            format!("id: k.3\ndata: {}\n\n", "ü".repeat(3000)),
            "id: k.4\nevent: close\ndata: {\"code\":1000,\"reason\":\"\"}\n\n".to_string(),
        ];
        let body: String = events.concat();
        let mut wire = Vec::new();
        // Chunks of uneven sizes, cut anywhere (inside a UTF-8 sequence too).
        let bytes = body.as_bytes();
        let mut at = 0;
        for (i, size) in [1usize, 7, 30, 2, 500, 1, 3].iter().cycle().enumerate() {
            if at == bytes.len() {
                break;
            }
            let end = (at + size).min(bytes.len());
            let ext = if i % 3 == 0 { ";ext=1" } else { "" };
            wire.extend_from_slice(format!("{:X}{ext}\r\n", end - at).as_bytes());
            wire.extend_from_slice(&bytes[at..end]);
            wire.extend_from_slice(b"\r\n");
            at = end;
        }
        wire.extend_from_slice(b"0\r\nx-trailer: yes\r\n\r\n");
        let expected = Parser::default().push(&body);
        assert_eq!(expected.len(), 5, "the comment is no event");
        (wire, expected)
    }

    fn decode_in_pieces(wire: &[u8], cuts: &[usize]) -> (Vec<Event>, bool) {
        let mut decoder = EventDecoder::chunked();
        let mut events = Vec::new();
        let mut done = false;
        let mut from = 0;
        for &to in cuts.iter().chain([wire.len()].iter()) {
            let (got, ended) = decoder.feed(&wire[from..to]).unwrap();
            assert!(!done || got.is_empty(), "nothing after the end");
            events.extend(got);
            done |= ended;
            from = to;
        }
        (events, done)
    }

    #[test]
    fn a_chunked_stream_decodes_the_same_however_the_reads_split_it() {
        let (wire, expected) = chunked_stream();
        assert_eq!(decode_in_pieces(&wire, &[]), (expected.clone(), true));
        // Every single split point, then every byte on its own.
        for cut in 0..=wire.len() {
            assert_eq!(decode_in_pieces(&wire, &[cut]), (expected.clone(), true), "split at {cut}");
        }
        let every: Vec<usize> = (1..wire.len()).collect();
        assert_eq!(decode_in_pieces(&wire, &every), (expected.clone(), true));
        // Pseudo-random read sizes.
        let mut rng = crate::client::Lcg(3);
        for _ in 0..200 {
            let mut cuts = Vec::new();
            let mut at = 0;
            loop {
                at += 1 + (rng.next() % 64) as usize;
                if at >= wire.len() {
                    break;
                }
                cuts.push(at);
            }
            assert_eq!(decode_in_pieces(&wire, &cuts), (expected.clone(), true));
        }
        assert_eq!(expected[1].data, "{\"type\":\"chat\",\"text\":\"héllo ✓ 🦀\"}");
        assert_eq!(expected[2].data, "line one\nline two");
        assert_eq!(expected[4].kind, sse::CLOSE_EVENT);
    }

    #[test]
    fn malformed_chunking_is_an_error() {
        let mut out = Vec::new();
        assert!(Dechunker::default().feed(b"zz\r\n", &mut out).is_err());
        assert!(Dechunker::default().feed(b"2\r\nabc\r\n", &mut out).is_err(), "data past the size");
        assert!(Dechunker::default().feed(&[b'1'; MAX_CHUNK_LINE + 1], &mut out).is_err());
        let mut d = Dechunker::default();
        out.clear();
        assert!(!d.feed(b"3\r\nab", &mut out).unwrap());
        assert!(d.feed(b"c\r\n0\r\n\r\nleftover", &mut out).unwrap());
        assert_eq!(out, b"abc");
    }

    #[test]
    fn text_waits_for_split_utf8_and_cr() {
        let mut t = TextDecoder::default();
        let crab = "🦀".as_bytes();
        assert_eq!(t.decode(&crab[..1]).unwrap(), "");
        assert_eq!(t.decode(&crab[1..3]).unwrap(), "");
        assert_eq!(t.decode(&crab[3..]).unwrap(), "🦀");
        assert_eq!(t.decode(b"a\r").unwrap(), "a");
        assert_eq!(t.decode(b"\nb").unwrap(), "\r\nb");
        assert!(t.decode(&[0xff, b'a']).is_err());
    }

    #[test]
    fn other_framings_end_where_the_head_says() {
        let head = Head { status: 200, len: 0, content_length: Some(10), chunked: false };
        let mut d = EventDecoder::for_head(&head);
        let (got, done) = d.feed(b"data: 1\n\n").unwrap();
        assert_eq!((got.len(), done), (1, false));
        assert_eq!(d.feed(b"\nignored").unwrap(), (Vec::new(), true));
        let head = Head { status: 200, len: 0, content_length: None, chunked: false };
        assert_eq!(EventDecoder::for_head(&head).feed(b"data: x\n\n").unwrap().0.len(), 1);
    }

    fn drain(queue: &mut VecDeque<String>, max_messages: usize, max_bytes: usize) -> Vec<(String, usize)> {
        let mut batches = Vec::new();
        while !queue.is_empty() {
            batches.push(take_batch(queue, max_messages, max_bytes));
        }
        batches
    }

    #[test]
    fn batches_hold_at_most_64_messages() {
        let msgs: Vec<String> = (0..200).map(|i| format!("{{\"n\":{i}}}")).collect();
        let mut queue: VecDeque<String> = msgs.iter().cloned().collect();
        let batches = drain(&mut queue, MAX_BATCH_MESSAGES, MAX_BATCH_BYTES);
        assert_eq!(batches.iter().map(|(_, n)| *n).collect::<Vec<_>>(), [64, 64, 64, 8]);
        let mut seen = Vec::new();
        for (body, n) in &batches {
            let items: Vec<serde_json::Value> = serde_json::from_str(body).unwrap();
            assert_eq!(items.len(), *n);
            seen.extend(items.iter().map(|v| v.to_string()));
        }
        assert_eq!(seen, msgs, "every message once, in order");
    }

    #[test]
    fn batches_stay_within_the_body_limit() {
        // 30,000-byte messages: 4 fit in 128 KiB (120,005 bytes), 5 would not.
        let big = format!("\"{}\"", "x".repeat(29_998));
        let mut queue: VecDeque<String> = std::iter::repeat_n(big.clone(), 10).collect();
        let batches = drain(&mut queue, MAX_BATCH_MESSAGES, MAX_BATCH_BYTES);
        assert_eq!(batches.iter().map(|(_, n)| *n).collect::<Vec<_>>(), [4, 4, 2]);
        assert!(batches.iter().all(|(body, _)| body.len() <= MAX_BATCH_BYTES));
        // A body exactly at the limit is taken; one byte more is not.
        let mut queue: VecDeque<String> = ["aaa", "bb"].map(String::from).into();
        assert_eq!(take_batch(&mut queue, 64, 8), ("[aaa,bb]".to_string(), 2));
        let mut queue: VecDeque<String> = ["aaa", "bbb"].map(String::from).into();
        assert_eq!(drain(&mut queue, 64, 8), [("[aaa]".to_string(), 1), ("[bbb]".to_string(), 1)]);
        // A message too big for any batch still goes, alone.
        let mut queue: VecDeque<String> = [big.clone(), "1".into()].into();
        assert_eq!(drain(&mut queue, 64, 100), [(format!("[{big}]"), 1), ("[1]".to_string(), 1)]);
    }

    /// What the stand-in server saw.
    #[derive(Debug, Default)]
    struct Seen {
        /// Per POST: its batch number, messages, and `Last-Event-ID`.
        posts: Vec<(u64, usize, Option<String>)>,
        /// TCP connections that carried POSTs.
        post_connections: HashSet<SocketAddr>,
        /// Chat texts taken, in order (a batch sent again is not taken twice).
        texts: Vec<String>,
    }

    /// How the stand-in server misbehaves.
    #[derive(Debug, Clone, Copy, Default)]
    struct Quirks {
        /// Close a POST connection after every answer, without saying so.
        close_after_answer: bool,
        /// Take this batch, then close its connection instead of answering.
        lose_answer_to: Option<u64>,
    }

    /// A stand-in for the server's `/sse`: one connection; `hello` gets `welcome`,
    /// each `chat` comes back as a `chat` event. Events go out in two chunks each, cut
    /// in the middle (of a UTF-8 sequence too).
    async fn stand_in(quirks: Quirks) -> (SocketAddr, Arc<Mutex<Seen>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (events_tx, events_rx) = mpsc::unbounded_channel::<String>();
        let events_rx = Arc::new(tokio::sync::Mutex::new(events_rx));
        let last_batch = Arc::new(Mutex::new(0u64));
        let seen2 = seen.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = listener.accept().await.unwrap();
                let (seen, events_tx, events_rx, last_batch) =
                    (seen2.clone(), events_tx.clone(), events_rx.clone(), last_batch.clone());
                tokio::spawn(async move {
                    stand_in_connection(tcp, peer, quirks, seen, events_tx, events_rx, last_batch).await
                });
            }
        });
        (addr, seen)
    }

    async fn stand_in_connection(
        mut tcp: TcpStream,
        peer: SocketAddr,
        quirks: Quirks,
        seen: Arc<Mutex<Seen>>,
        events_tx: mpsc::UnboundedSender<String>,
        events_rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>>,
        last_batch: Arc<Mutex<u64>>,
    ) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            // One request head and body.
            let end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                match tcp.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8(buf[..end].to_vec()).unwrap();
            let header = |name: &str| header_value(head.as_bytes(), name);
            if head.starts_with("GET /sse ") {
                let mut events = events_rx.lock().await;
                let start = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                tcp.write_all(start).await.unwrap();
                let mut n = 0;
                let mut next = Some("id: key.0\nevent: stream\ndata: {\"key\":\"key\"}\n\n".to_string());
                while let Some(data) = next {
                    let bytes = data.as_bytes();
                    for part in [&bytes[..bytes.len() / 2], &bytes[bytes.len() / 2..]] {
                        let mut out = format!("{:x}\r\n", part.len()).into_bytes();
                        out.extend_from_slice(part);
                        out.extend_from_slice(b"\r\n");
                        if tcp.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                    n += 1;
                    next = events.recv().await.map(|data| format!("id: key.{n}\ndata: {data}\n\n"));
                }
                return;
            }
            assert!(head.starts_with("POST /sse "), "{head}");
            let length: usize = header("content-length").unwrap().parse().unwrap();
            while buf.len() < end + length {
                match tcp.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body: Vec<u8> = buf.drain(..end + length).skip(end).collect();
            assert_eq!(header(sse::KEY_HEADER).as_deref(), Some("key"));
            let batch: u64 = header(sse::BATCH_HEADER).unwrap().parse().unwrap();
            let msgs: Vec<ClientMsg> = serde_json::from_slice(&body).unwrap();
            assert!(msgs.len() <= MAX_BATCH_MESSAGES && body.len() <= MAX_BATCH_BYTES);
            {
                let mut s = seen.lock().unwrap();
                s.posts.push((batch, msgs.len(), header("last-event-id")));
                s.post_connections.insert(peer);
                let mut last = last_batch.lock().unwrap();
                if batch > *last {
                    *last = batch;
                    for msg in msgs {
                        let reply = match msg {
                            ClientMsg::Hello { .. } => ServerMsg::Welcome {
                                protocol: 1,
                                session_id: SessionId(Default::default()),
                                resume_token: ResumeToken(Default::default()),
                                resumed: false,
                                ice_servers: Vec::new(),
                                online: OnlineCounts::default(),
                                relay: false,
                                country: None,
                                moderation: None,
                            },
                            ClientMsg::Chat { match_id, text } => {
                                s.texts.push(text.clone());
                                ServerMsg::Chat { match_id, text }
                            }
                            other => panic!("unexpected {other:?}"),
                        };
                        events_tx.send(reply.to_json()).unwrap();
                    }
                }
            }
            if quirks.lose_answer_to == Some(batch)
                && seen.lock().unwrap().posts.iter().filter(|p| p.0 == batch).count() == 1
            {
                return;
            }
            if tcp.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await.is_err() || quirks.close_after_answer {
                return;
            }
        }
    }

    async fn chat_round_trip(quirks: Quirks, lines: usize) -> (Arc<Mutex<Seen>>, Arc<PostStats>) {
        let (addr, seen) = stand_in(quirks).await;
        let stats = Arc::new(PostStats::default());
        let mut c = SseClient::connect(addr, &addr.to_string(), None, stats.clone()).await.unwrap();
        let match_id = MatchId(Default::default());
        let texts: Vec<String> = (0..lines).map(|i| format!("line {i} é✓")).collect();
        for text in &texts {
            c.send(&ClientMsg::Chat { match_id, text: text.clone() }).unwrap();
        }
        for text in &texts {
            let got = tokio::time::timeout(Duration::from_secs(10), c.recv()).await.unwrap().unwrap();
            assert_eq!(got, ServerMsg::Chat { match_id, text: text.clone() });
        }
        assert_eq!(&seen.lock().unwrap().texts, &texts, "every line taken once, in order");
        (seen, stats)
    }

    #[tokio::test]
    async fn posts_batch_what_queued_on_one_keep_alive_connection() {
        let (seen, stats) = chat_round_trip(Quirks::default(), 300).await;
        let seen = seen.lock().unwrap();
        assert_eq!(seen.post_connections.len(), 1, "one keep-alive connection");
        assert!(seen.posts.len() < 50, "300 lines in {} POSTs", seen.posts.len());
        assert!(seen.posts.iter().any(|p| p.1 > 1), "some POSTs carry several messages");
        let numbers: Vec<u64> = seen.posts.iter().map(|p| p.0).collect();
        assert_eq!(numbers, (1..=numbers.len() as u64).collect::<Vec<_>>(), "batches numbered 1, 2, …");
        assert_eq!(seen.posts[0].1, 1, "hello goes alone");
        assert!(seen.posts[1..].iter().all(|p| p.2.as_deref().is_some_and(|id| id.starts_with("key."))));
        assert_eq!(stats.posts.load(Ordering::Relaxed), seen.posts.len() as u64);
        assert_eq!(stats.messages.load(Ordering::Relaxed), 301);
        assert_eq!(stats.connections.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_batch_whose_answer_was_lost_is_sent_again_and_taken_once() {
        let quirks = Quirks { close_after_answer: true, lose_answer_to: Some(2) };
        let (seen, stats) = chat_round_trip(quirks, 100).await;
        let seen = seen.lock().unwrap();
        assert_eq!(seen.posts.iter().filter(|p| p.0 == 2).count(), 2, "batch 2 sent twice");
        assert!(seen.post_connections.len() > 2, "new connections after each close");
        assert!(stats.resent.load(Ordering::Relaxed) >= 1);
        assert_eq!(stats.messages.load(Ordering::Relaxed), 101);
    }

    #[tokio::test]
    async fn a_refused_stream_says_its_status() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = tcp.read(&mut buf).await;
            let _ = tcp.write_all(b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 4\r\n\r\nbusy").await;
        });
        let e = SseClient::connect(addr, "x", None, Arc::default()).await.err().unwrap();
        assert_eq!(e.downcast_ref::<Refused>().map(|r| r.status), Some(429));
        assert_eq!(crate::client::connect_failure_class(&e), "HTTP 429");
    }
}
