//! A fallback-transport client over plain TCP: the event stream read as the bytes
//! arrive (chunked or not), POSTs on connections of their own.

use super::WAIT;
use protocol::sse::{self, Event, Parser};
use protocol::{ClientMsg, ServerMsg};
use std::collections::VecDeque;
use std::net::SocketAddr;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// An HTTP response's head.
#[derive(Debug)]
pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

async fn read_head(reader: &mut BufReader<TcpStream>) -> Head {
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{line}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await.unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':').unwrap();
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    Head { status, headers }
}

/// An event stream as it arrives.
pub struct EventStream {
    reader: BufReader<TcpStream>,
    chunked: bool,
    /// Bytes left in the current chunk, or of the whole body.
    left: Option<usize>,
    parser: Parser,
    ready: VecDeque<Event>,
}

impl EventStream {
    /// The next event; `None` once the stream has ended.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Some(e);
            }
            let bytes = tokio::time::timeout(WAIT, self.read()).await.expect("an event in time")?;
            self.ready.extend(self.parser.push(&String::from_utf8(bytes).unwrap()));
        }
    }

    async fn read(&mut self) -> Option<Vec<u8>> {
        if self.chunked && self.left.is_none_or(|n| n == 0) {
            if self.left == Some(0) {
                let mut crlf = String::new();
                self.reader.read_line(&mut crlf).await.ok()?;
            }
            let mut size = String::new();
            if self.reader.read_line(&mut size).await.ok()? == 0 {
                return None;
            }
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            if n == 0 {
                return None;
            }
            self.left = Some(n);
        }
        if self.left == Some(0) {
            return None;
        }
        let mut buf = vec![0; self.left.unwrap_or(4096).min(4096)];
        let n = self.reader.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        if let Some(left) = &mut self.left {
            *left -= n;
        }
        buf.truncate(n);
        Some(buf)
    }
}

/// `GET /sse` with `headers`: the response's head, and its event stream if it is one.
pub async fn get(addr: SocketAddr, headers: &[(&str, &str)]) -> (Head, Option<EventStream>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let extra: String = headers.iter().map(|(n, v)| format!("{n}: {v}\r\n")).collect();
    let req = format!("GET {} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{extra}\r\n", sse::PATH);
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(stream);
    let head = read_head(&mut reader).await;
    let is_stream = head.status == 200 && head.header("content-type") == Some("text/event-stream");
    let chunked = head.header("transfer-encoding").is_some_and(|t| t.contains("chunked"));
    let length = head.header("content-length").and_then(|l| l.parse().ok());
    let events = is_stream.then(|| EventStream {
        reader,
        chunked,
        left: if chunked { None } else { length },
        parser: Parser::default(),
        ready: VecDeque::new(),
    });
    (head, events)
}

/// `POST /sse` with `headers` and `body`: the status and the body.
pub async fn post_raw(addr: SocketAddr, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let extra: String = headers.iter().map(|(n, v)| format!("{n}: {v}\r\n")).collect();
    let req = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
        sse::PATH,
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    // The server may answer (413) before reading the whole body.
    let _ = stream.write_all(body).await;
    let mut reader = BufReader::new(stream);
    let head = read_head(&mut reader).await;
    let mut rest = String::new();
    let _ = tokio::time::timeout(WAIT, reader.read_to_string(&mut rest)).await;
    (head.status, rest)
}

/// A protocol client on the fallback transport that has its `welcome`.
pub struct SseClient {
    pub addr: SocketAddr,
    pub events: EventStream,
    pub key: String,
    /// The id of the last event read.
    pub last_id: String,
    batch: u64,
    pub welcome: ServerMsg,
}

impl SseClient {
    /// Opens a connection and says `hello` (resuming `resume`, if given).
    pub async fn connect(addr: SocketAddr, resume: Option<&protocol::ResumeToken>) -> Self {
        let mut c = Self::open(addr).await;
        c.post(&[ClientMsg::Hello { resume_token: resume.map(|t| t.to_string()) }]).await;
        c.welcome = c.recv().await;
        assert!(matches!(c.welcome, ServerMsg::Welcome { .. }), "{:?}", c.welcome);
        c
    }

    /// Opens a connection and reads its `stream` event only.
    pub async fn open(addr: SocketAddr) -> Self {
        let (head, events) = get(addr, &[]).await;
        let mut events = events.unwrap_or_else(|| panic!("no event stream: {head:?}"));
        let first = events.next().await.expect("the stream event");
        assert_eq!(first.kind, sse::STREAM_EVENT);
        let key: serde_json::Value = serde_json::from_str(&first.data).unwrap();
        let key = key["key"].as_str().unwrap().to_string();
        Self {
            addr,
            events,
            key,
            last_id: first.id.unwrap(),
            batch: 0,
            welcome: ServerMsg::Queued { mode: protocol::Mode::Text },
        }
    }

    pub fn session(&self) -> protocol::SessionId {
        match &self.welcome {
            ServerMsg::Welcome { session_id, .. } => *session_id,
            other => panic!("{other:?}"),
        }
    }

    pub fn token(&self) -> protocol::ResumeToken {
        match &self.welcome {
            ServerMsg::Welcome { resume_token, .. } => resume_token.clone(),
            other => panic!("{other:?}"),
        }
    }

    /// POSTs `msgs` as the next batch; the status.
    pub async fn post(&mut self, msgs: &[ClientMsg]) -> u16 {
        self.batch += 1;
        let batch = self.batch;
        self.post_batch(batch, msgs).await
    }

    /// POSTs `msgs` as batch number `batch` (a retry repeats one).
    pub async fn post_batch(&mut self, batch: u64, msgs: &[ClientMsg]) -> u16 {
        let body = format!("[{}]", msgs.iter().map(ClientMsg::to_json).collect::<Vec<_>>().join(","));
        let batch = batch.to_string();
        let headers = [(sse::KEY_HEADER, self.key.as_str()), (sse::BATCH_HEADER, batch.as_str())];
        post_raw(self.addr, &headers, body.as_bytes()).await.0
    }

    /// The next event (`online` pushes included).
    pub async fn event(&mut self) -> Event {
        let e = self.events.next().await.expect("the stream is open");
        if let Some(id) = &e.id {
            self.last_id = id.clone();
        }
        e
    }

    /// The next server message that is not an `online` push.
    pub async fn recv(&mut self) -> ServerMsg {
        loop {
            let e = self.event().await;
            assert_eq!(e.kind, "message", "{e:?}");
            let msg = ServerMsg::from_json(&e.data).unwrap();
            if !matches!(msg, ServerMsg::Online(_)) {
                return msg;
            }
        }
    }

    /// Reads until the server's `close` event; its code.
    pub async fn expect_close(&mut self) -> u16 {
        loop {
            let e = self.event().await;
            if e.kind == sse::CLOSE_EVENT {
                let v: serde_json::Value = serde_json::from_str(&e.data).unwrap();
                return v["code"].as_u64().unwrap() as u16;
            }
        }
    }

    /// Drops the event stream and opens another with `Last-Event-ID: after`.
    pub async fn reattach(&mut self, after: &str) -> Head {
        let (head, events) = get(self.addr, &[("Last-Event-ID", after)]).await;
        if let Some(events) = events {
            self.events = events;
        }
        head
    }
}
