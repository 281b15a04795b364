//! Automated moderation of sampled video frames.
//!
//! Clients POST small JPEG frames of their own camera and of the stranger's video
//! ([`endpoint`]). Each one is scored by a [`Classifier`] on a [`Moderator`]: a small,
//! bounded pool of threads of its own, so inference never runs on (or stalls) the
//! signaling tasks. When the pool is busy a frame is answered "skipped" at once and
//! counted, never queued without bound. The verdict goes to the hub, whose rules
//! (`hub::core::safety`) decide bans.
//!
//! Frames live in memory only while they are scored: never written, never logged.
//! Only scores and counts reach `/metrics`.
//!
//! Classifiers: [`model::OpenNsfw`] (Yahoo's open_nsfw, run here with tract),
//! [`remote::Remote`] (a hosted service over HTTP) and [`RedCard`] (tests: flags
//! frames that are mostly bright red).

pub mod endpoint;
pub mod model;
pub mod remote;

use crate::config::{Config, ModerationMode};
use crate::metrics as m;
use image::RgbImage;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Where clients send frames.
pub const FRAME_PATH: &str = "/moderation/frame";
/// The side of the square frames clients send (open_nsfw's input).
pub const FRAME_SIZE: u32 = 224;
/// Largest frame accepted, in bytes (a 224×224 JPEG is 5–20 KB).
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Largest width or height of a frame accepted (bigger ones are refused before they
/// are decoded: a small JPEG can claim enormous dimensions).
pub const MAX_FRAME_SIDE: u32 = 1024;
/// Most frames scored in one classifier call.
pub const MAX_BATCH: usize = 8;

/// Scores frames: for each, the probability (0 to 1) that it breaks the rules.
pub trait Classifier: Send + Sync + 'static {
    /// One score per JPEG, in order. Called on a moderation thread: it may block.
    fn score(&self, jpegs: &[&[u8]]) -> anyhow::Result<Vec<f32>>;
    /// For logs.
    fn name(&self) -> &'static str;
}

/// Decodes a JPEG frame into RGB, refusing oversized dimensions before decoding.
pub fn decode(jpeg: &[u8]) -> anyhow::Result<RgbImage> {
    use image::ImageDecoder;
    let decoder = image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(jpeg))?;
    let (w, h) = decoder.dimensions();
    anyhow::ensure!(w > 0 && h > 0 && w <= MAX_FRAME_SIDE && h <= MAX_FRAME_SIDE, "a {w}×{h} frame is too large");
    Ok(image::DynamicImage::from_decoder(decoder)?.to_rgb8())
}

/// Test classifier: a frame is flagged (score 1) when more than half of its pixels are
/// bright red (R > 180, G < 80, B < 80), else it scores 0. Lets tests and demos flag
/// "on demand" with a red camera, and nothing else.
#[derive(Debug, Default)]
pub struct RedCard;

impl Classifier for RedCard {
    fn score(&self, jpegs: &[&[u8]]) -> anyhow::Result<Vec<f32>> {
        jpegs
            .iter()
            .map(|jpeg| {
                let img = decode(jpeg)?;
                let red = img.pixels().filter(|p| p[0] > 180 && p[1] < 80 && p[2] < 80).count();
                Ok(if red * 2 > img.pixels().len() { 1.0 } else { 0.0 })
            })
            .collect()
    }

    fn name(&self) -> &'static str {
        "red-card (test)"
    }
}

/// What became of a frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    Scored(f32),
    /// The pool was busy: not scored.
    Skipped,
    /// Not a usable frame, or the classifier failed.
    Failed,
}

struct Job {
    jpeg: axum::body::Bytes,
    reply: tokio::sync::oneshot::Sender<Outcome>,
}

/// The classifier pool. See the module docs.
#[derive(Clone)]
pub struct Moderator {
    jobs: SyncSender<Job>,
    threshold: f32,
}

impl std::fmt::Debug for Moderator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Moderator").field("threshold", &self.threshold).finish_non_exhaustive()
    }
}

impl Moderator {
    /// The classifier `--moderation` names, on its pool; `None` when it is off. Fails
    /// with a clear message when the model file is missing or broken.
    pub fn from_config(config: &Config) -> anyhow::Result<Option<Self>> {
        let classifier: Arc<dyn Classifier> = match config.moderation {
            ModerationMode::Off => return Ok(None),
            ModerationMode::Test => Arc::new(RedCard),
            ModerationMode::Model => Arc::new(model::OpenNsfw::load(&config.moderation_model)?),
            ModerationMode::Remote => {
                let url = config.moderation_url.as_deref().unwrap_or_default();
                Arc::new(remote::Remote::new(url, tokio::runtime::Handle::current())?)
            }
        };
        tracing::info!(
            classifier = classifier.name(),
            threads = config.moderation_threads,
            threshold = config.moderation_threshold,
            "moderating sampled video frames"
        );
        Ok(Some(Self::start(
            classifier,
            config.moderation_threads.into(),
            config.moderation_queue.into(),
            config.moderation_threshold,
        )))
    }

    /// `threads` threads running `classifier`, with room for `queue` frames waiting.
    pub fn start(classifier: Arc<dyn Classifier>, threads: usize, queue: usize, threshold: f32) -> Self {
        let (jobs, rx) = std::sync::mpsc::sync_channel(queue);
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..threads.max(1) {
            let (classifier, rx) = (classifier.clone(), rx.clone());
            let spawned =
                std::thread::Builder::new().name(format!("moderation-{n}")).spawn(move || work(&*classifier, &rx));
            if let Err(e) = spawned {
                tracing::error!("cannot start a moderation thread: {e}");
            }
        }
        Self { jobs, threshold }
    }

    /// Whether `score` breaks the rules.
    pub fn flags(&self, score: f32) -> bool {
        score >= self.threshold
    }

    /// Scores `jpeg` on the pool; answers [`Outcome::Skipped`] at once when it is busy.
    pub async fn score(&self, jpeg: axum::body::Bytes) -> Outcome {
        let (reply, answer) = tokio::sync::oneshot::channel();
        match self.jobs.try_send(Job { jpeg, reply }) {
            Ok(()) => answer.await.unwrap_or(Outcome::Failed),
            Err(TrySendError::Full(_)) => Outcome::Skipped,
            Err(TrySendError::Disconnected(_)) => Outcome::Failed,
        }
    }
}

/// A moderation thread: takes whatever is queued (up to [`MAX_BATCH`]) and scores it
/// in one call, until the pool is dropped.
fn work(classifier: &dyn Classifier, rx: &Mutex<Receiver<Job>>) {
    loop {
        let batch = {
            let Ok(rx) = rx.lock() else { return };
            let Ok(first) = rx.recv() else { return };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            batch
        };
        let started = Instant::now();
        let jpegs: Vec<&[u8]> = batch.iter().map(|j| &j.jpeg[..]).collect();
        let scores = classifier.score(&jpegs);
        let per_frame = started.elapsed().as_secs_f64() / batch.len() as f64;
        match scores {
            Ok(scores) => {
                for (job, score) in batch.into_iter().zip(scores) {
                    metrics::histogram!(m::MODERATION_INFERENCE).record(per_frame);
                    metrics::histogram!(m::MODERATION_SCORE).record(f64::from(score));
                    let _ = job.reply.send(Outcome::Scored(score));
                }
            }
            Err(e) if batch.len() > 1 => {
                // One bad frame must not fail the others: score them one by one.
                tracing::debug!("a batch failed ({e:#}); scoring its frames one by one");
                for job in batch {
                    let outcome = match classifier.score(&[&job.jpeg[..]]) {
                        Ok(s) => Outcome::Scored(s[0]),
                        Err(_) => Outcome::Failed,
                    };
                    let _ = job.reply.send(outcome);
                }
            }
            Err(e) => {
                tracing::debug!("a frame could not be scored: {e:#}");
                for job in batch {
                    let _ = job.reply.send(Outcome::Failed);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn jpeg(w: u32, h: u32, px: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
        let img = RgbImage::from_fn(w, h, |x, y| image::Rgb(px(x, y)));
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90).encode_image(&img).unwrap();
        out
    }

    #[test]
    fn the_red_card_flags_red_frames_only() {
        let red = jpeg(224, 224, |_, _| [230, 20, 20]);
        let half = jpeg(224, 224, |x, _| if x < 80 { [230, 20, 20] } else { [20, 200, 20] });
        let grey = jpeg(64, 48, |_, _| [128, 128, 128]);
        assert_eq!(RedCard.score(&[&red, &half, &grey]).unwrap(), [1.0, 0.0, 0.0]);
        assert!(RedCard.score(&[b"not a jpeg"]).is_err());
    }

    #[test]
    fn oversized_frames_are_refused_before_decoding() {
        let big = jpeg(1100, 8, |_, _| [0, 0, 0]);
        assert!(decode(&big).unwrap_err().to_string().contains("too large"));
    }

    /// A classifier that waits until told, to fill the pool.
    struct Held(Mutex<Receiver<()>>);
    impl Classifier for Held {
        fn score(&self, jpegs: &[&[u8]]) -> anyhow::Result<Vec<f32>> {
            let _ = self.0.lock().unwrap().recv();
            Ok(vec![0.5; jpegs.len()])
        }
        fn name(&self) -> &'static str {
            "held"
        }
    }

    #[tokio::test]
    async fn a_busy_pool_skips_frames_instead_of_queueing_them() {
        let (go, wait) = std::sync::mpsc::channel();
        let pool = Moderator::start(Arc::new(Held(Mutex::new(wait))), 1, 2, 0.8);
        let frame = axum::body::Bytes::from_static(b"x");
        // One frame on the thread, two waiting: the fourth is skipped at once.
        let first = tokio::spawn({
            let pool = pool.clone();
            let frame = frame.clone();
            async move { pool.score(frame).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let queued: Vec<_> = (0..2)
            .map(|_| {
                let (pool, frame) = (pool.clone(), frame.clone());
                tokio::spawn(async move { pool.score(frame).await })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(pool.score(frame.clone()).await, Outcome::Skipped);
        for _ in 0..3 {
            go.send(()).unwrap();
        }
        assert_eq!(first.await.unwrap(), Outcome::Scored(0.5));
        for q in queued {
            assert_eq!(q.await.unwrap(), Outcome::Scored(0.5), "the two waiting ones ran as one batch");
        }
        assert!(!pool.flags(0.79) && pool.flags(0.8));
    }
}
