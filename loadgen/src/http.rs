//! Just enough HTTP/1.1 over raw TCP for the attack scenarios: a one-shot `GET`
//! (read to the end), framing of pipelined responses, and loopback-only URLs.

use crate::client::tcp_connect;
use anyhow::{Context, bail};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A loopback `http://host:port/path` URL, split up.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    pub addr: SocketAddr,
    /// The `Host` header value (as written in the URL).
    pub host: String,
    pub path: String,
}

/// Parses `http://host:port/path`, refusing anything but loopback.
/// `host:port` resolved, refusing anything but loopback (every scenario's target).
pub fn loopback_addr(authority: &str) -> anyhow::Result<SocketAddr> {
    let addr = authority
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {authority}"))?
        .next()
        .with_context(|| format!("{authority} resolves to nothing"))?;
    if !addr.ip().is_loopback() {
        bail!("refusing {} : loadgen only talks to loopback (127.0.0.0/8, ::1)", addr.ip());
    }
    Ok(addr)
}

pub fn loopback_http(url: &str) -> anyhow::Result<HttpTarget> {
    let rest = url.strip_prefix("http://").with_context(|| format!("only http:// URLs are supported, got {url}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = loopback_addr(authority)?;
    Ok(HttpTarget { addr, host: authority.to_string(), path: path.to_string() })
}

/// One complete response read until the server closed the connection.
#[derive(Debug)]
pub struct Fetched {
    pub status: u16,
    pub body: Vec<u8>,
    /// Connect to the first response byte.
    pub first_byte: Duration,
    /// Connect to the end of the response.
    pub total: Duration,
}

/// `GET path` with `Connection: close` from `source`, reading to the end (so the time
/// covers the whole response), within `limit`.
pub async fn get(
    target: SocketAddr,
    host: &str,
    path: &str,
    source: Option<IpAddr>,
    limit: Duration,
) -> anyhow::Result<Fetched> {
    let started = Instant::now();
    let work = async {
        let mut stream = tcp_connect(target, source).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: */*\r\n\r\n");
        stream.write_all(request.as_bytes()).await.context("sending the request")?;
        let mut raw = Vec::with_capacity(16 * 1024);
        let mut chunk = vec![0u8; 16 * 1024];
        let mut first_byte = None;
        loop {
            let n = stream.read(&mut chunk).await.context("reading the response")?;
            if n == 0 {
                break;
            }
            first_byte.get_or_insert_with(|| started.elapsed());
            raw.extend_from_slice(&chunk[..n]);
        }
        let total = started.elapsed();
        let head = parse_head(&raw)?.context("the connection closed before a complete response head")?;
        let body = raw[head.len..].to_vec();
        let body = if head.chunked { dechunk(&body).context("a malformed chunked body")? } else { body };
        anyhow::Ok(Fetched { status: head.status, body, first_byte: first_byte.unwrap_or(total), total })
    };
    tokio::time::timeout(limit, work).await.with_context(|| format!("no complete response in {limit:?}"))?
}

/// A response's status line and headers.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Bytes of the head, including the blank line.
    pub len: usize,
    pub content_length: Option<usize>,
    pub chunked: bool,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The head at the start of `buf`, or `None` while it is incomplete.
pub fn parse_head(buf: &[u8]) -> anyhow::Result<Option<Head>> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > 64 * 1024 {
            bail!("a response head over 64 KiB");
        }
        return Ok(None);
    };
    let text = std::str::from_utf8(&buf[..end]).context("a response head that is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split(' ');
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        bail!("not an HTTP/1 status line: {status_line:?}");
    }
    let status: u16 = parts.next().and_then(|s| s.parse().ok()).context("no status code")?;
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(value.parse().context("a bad Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    Ok(Some(Head { status, len: end + 4, content_length, chunked }))
}

/// The status and length of the first complete response at the start of `buf` (for
/// pipelining), or `None` while it is incomplete. A response whose end is only its
/// connection's end cannot be pipelined and is an error.
pub fn complete_response(buf: &[u8]) -> anyhow::Result<Option<(u16, usize)>> {
    let Some(head) = parse_head(buf)? else { return Ok(None) };
    let bodyless = (100..200).contains(&head.status) || head.status == 204 || head.status == 304;
    if head.chunked {
        return Ok(chunked_len(&buf[head.len..])?.map(|n| (head.status, head.len + n)));
    }
    match head.content_length {
        Some(n) => Ok((buf.len() >= head.len + n).then_some((head.status, head.len + n))),
        None if bodyless => Ok(Some((head.status, head.len))),
        None => bail!("a response without Content-Length or chunked encoding (status {})", head.status),
    }
}

/// Length of a complete chunked body at the start of `buf` (trailers included), or
/// `None` while it is incomplete.
fn chunked_len(buf: &[u8]) -> anyhow::Result<Option<usize>> {
    let mut pos = 0;
    loop {
        let Some(eol) = find(&buf[pos..], b"\r\n") else { return Ok(None) };
        let line = std::str::from_utf8(&buf[pos..pos + eol]).context("a chunk size that is not UTF-8")?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or_default().trim(), 16)
            .with_context(|| format!("a bad chunk size {line:?}"))?;
        pos += eol + 2;
        if size == 0 {
            // Trailers, then a blank line.
            if buf[pos..].starts_with(b"\r\n") {
                return Ok(Some(pos + 2));
            }
            return Ok(find(&buf[pos..], b"\r\n\r\n").map(|i| pos + i + 4));
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        pos += size + 2;
    }
}

/// The payload of a complete chunked body.
fn dechunk(buf: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(buf.len());
    let mut pos = 0;
    loop {
        let eol = find(&buf[pos..], b"\r\n").context("a truncated chunked body")?;
        let line = std::str::from_utf8(&buf[pos..pos + eol])?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or_default().trim(), 16)?;
        pos += eol + 2;
        if size == 0 {
            return Ok(out);
        }
        let chunk = buf.get(pos..pos + size).context("a truncated chunk")?;
        out.extend_from_slice(chunk);
        pos += size + 2;
    }
}

/// `GET /healthz` as JSON.
pub async fn healthz(target: SocketAddr, source: Option<IpAddr>) -> anyhow::Result<serde_json::Value> {
    let host = target.to_string();
    let r = get(target, &host, "/healthz", source, Duration::from_secs(5)).await?;
    if r.status != 200 {
        bail!("/healthz answered {}", r.status);
    }
    serde_json::from_slice(&r.body).context("/healthz did not answer JSON")
}

/// The sample lines of gauges (and untyped metrics) in Prometheus text whose name
/// contains any of `words`.
pub fn matching_gauges(text: &str, words: &[&str]) -> Vec<String> {
    let mut typed = std::collections::HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                typed.insert(name.to_string(), kind.to_string());
            }
        }
    }
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter(|line| {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            let gauge = typed.get(name).is_none_or(|kind| kind == "gauge" || kind == "untyped");
            gauge && words.iter().any(|w| name.contains(w))
        })
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_http_urls() {
        let t = loopback_http("http://127.0.0.1:3900/metrics").unwrap();
        assert_eq!(t.path, "/metrics");
        assert_eq!(t.host, "127.0.0.1:3900");
        assert_eq!(loopback_http("http://127.0.0.1:3900").unwrap().path, "/");
        assert!(loopback_http("http://10.1.2.3:80/metrics").is_err());
        assert!(loopback_http("https://127.0.0.1:3900/metrics").is_err());
    }

    #[test]
    fn pipelined_responses_are_framed() {
        let one = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 5\r\n\r\n{\"a\"}";
        let mut buf = one.to_vec();
        buf.extend_from_slice(one);
        buf.extend_from_slice(&one[..20]);
        let (status, len) = complete_response(&buf).unwrap().unwrap();
        assert_eq!((status, len), (200, one.len()));
        let (_, len2) = complete_response(&buf[len..]).unwrap().unwrap();
        assert_eq!(len2, one.len());
        assert_eq!(complete_response(&buf[len + len2..]).unwrap(), None);
        // A body split in the middle is incomplete.
        assert_eq!(complete_response(&one[..one.len() - 1]).unwrap(), None);
    }

    #[test]
    fn chunked_responses_are_framed_and_decoded() {
        let r = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\nHTTP/1.1";
        let (status, len) = complete_response(r).unwrap().unwrap();
        assert_eq!(status, 200);
        assert_eq!(&r[len..], b"HTTP/1.1");
        let head = parse_head(r).unwrap().unwrap();
        assert!(head.chunked);
        assert_eq!(dechunk(&r[head.len..len]).unwrap(), b"abcde");
        assert_eq!(complete_response(&r[..60]).unwrap(), None);
    }

    #[test]
    fn unframed_responses_cannot_be_pipelined() {
        assert!(complete_response(b"HTTP/1.1 200 OK\r\n\r\nbody").is_err());
        assert_eq!(complete_response(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap(), Some((204, 27)));
        assert!(complete_response(b"SSH-2.0\r\n\r\n").is_err());
    }

    #[test]
    fn gauges_are_picked_by_name() {
        let text = "# TYPE letsmeet_sessions gauge\nletsmeet_sessions 3\n\
            # TYPE letsmeet_waiting gauge\nletsmeet_waiting{mode=\"video\"} 0\n\
            # TYPE letsmeet_sessions_total counter\nletsmeet_sessions_total 9\n\
            # TYPE letsmeet_interest_table_entries gauge\nletsmeet_interest_table_entries 12\n\
            # TYPE letsmeet_reports_total counter\nletsmeet_reports_total 1\n";
        let got = matching_gauges(text, &["table", "sessions", "waiting", "connections"]);
        assert_eq!(
            got,
            vec!["letsmeet_sessions 3", "letsmeet_waiting{mode=\"video\"} 0", "letsmeet_interest_table_entries 12"]
        );
    }
}
