//! A hosted classifier over HTTP, for operators who use one.
//!
//! Each frame is POSTed on its own to `--moderation-url` as `image/jpeg`; the service
//! answers `200` with `{"score": <0..1>}`. One connection per request, a 5 s deadline;
//! anything else is a failed frame (counted, and the user is not held up). Plain
//! `http://` only: run a TLS-terminating proxy beside the server for a remote `https`
//! service.

use super::Classifier;
use anyhow::{Context, bail};
use axum::body::Body;
use axum::http::{Request, StatusCode, Uri, header};
use hyper_util::rt::TokioIo;
use std::time::Duration;

/// Longest a remote classification may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read.
const MAX_ANSWER: usize = 4096;

#[derive(Debug)]
pub struct Remote {
    uri: Uri,
    /// `host:port` to connect to.
    authority: String,
    runtime: tokio::runtime::Handle,
}

impl Remote {
    /// A client of the service at `url`; calls run on `runtime` (the moderation
    /// threads block on them).
    pub fn new(url: &str, runtime: tokio::runtime::Handle) -> anyhow::Result<Self> {
        let uri: Uri = url.parse().with_context(|| format!("--moderation-url `{url}` is not a URL"))?;
        if uri.scheme_str() != Some("http") {
            bail!("--moderation-url must be an http:// URL (put a TLS proxy beside the server for https)");
        }
        let host = uri.host().context("--moderation-url has no host")?;
        let authority = format!("{host}:{}", uri.port_u16().unwrap_or(80));
        Ok(Self { uri, authority, runtime })
    }

    async fn score_one(&self, jpeg: Vec<u8>) -> anyhow::Result<f32> {
        let tcp = tokio::net::TcpStream::connect(&self.authority)
            .await
            .with_context(|| format!("cannot reach the classifier at {}", self.authority))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = Request::post(self.uri.clone())
            .header(header::HOST, self.authority.as_str())
            .header(header::CONTENT_TYPE, "image/jpeg")
            .body(Body::from(jpeg))?;
        let res = sender.send_request(req).await?;
        if res.status() != StatusCode::OK {
            bail!("the classifier answered {}", res.status());
        }
        let body = axum::body::to_bytes(Body::new(res.into_body()), MAX_ANSWER).await?;
        parse_answer(&body)
    }
}

/// `{"score": x}` with x within 0..=1.
fn parse_answer(body: &[u8]) -> anyhow::Result<f32> {
    #[derive(serde::Deserialize)]
    struct Answer {
        score: f32,
    }
    let answer: Answer = serde_json::from_slice(body).context("the classifier's answer is not {\"score\": …}")?;
    if !(0.0..=1.0).contains(&answer.score) {
        bail!("the classifier's score {} is not within 0..1", answer.score);
    }
    Ok(answer.score)
}

impl Classifier for Remote {
    fn score(&self, jpegs: &[&[u8]]) -> anyhow::Result<Vec<f32>> {
        let answers = self.runtime.block_on(async {
            let calls = jpegs.iter().map(|j| tokio::time::timeout(TIMEOUT, self.score_one(j.to_vec())));
            futures_util::future::join_all(calls).await
        });
        answers.into_iter().map(|a| a.context("the classifier did not answer in time")?).collect()
    }

    fn name(&self) -> &'static str {
        "remote"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;

    #[test]
    fn answers_are_checked() {
        assert_eq!(parse_answer(br#"{"score":0.25}"#).unwrap(), 0.25);
        assert!(parse_answer(br#"{"score":1.5}"#).is_err());
        assert!(parse_answer(b"yes").is_err());
        assert!(Remote::new("https://x/y", tokio::runtime::Runtime::new().unwrap().handle().clone()).is_err());
    }

    #[test]
    fn frames_go_to_the_service_and_its_scores_come_back() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let addr = rt.block_on(async {
            let app = axum::Router::new().route(
                "/score",
                post(|body: axum::body::Bytes| async move {
                    // The "service" scores a frame by its length, to tell frames apart.
                    axum::Json(serde_json::json!({ "score": body.len() as f32 / 10.0 }))
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await });
            addr
        });
        let remote = Remote::new(&format!("http://{addr}/score"), rt.handle().clone()).unwrap();
        // Called from a plain thread, as the moderation pool does.
        let scores = std::thread::spawn(move || remote.score(&[b"ab", b"abcd"]).unwrap()).join().unwrap();
        assert_eq!(scores, [0.2, 0.4]);
    }
}
