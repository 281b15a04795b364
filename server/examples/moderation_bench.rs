//! Inference time of the moderation model, as the server runs it: one thread, the
//! shipped test frames decoded, preprocessed and scored, one at a time and in
//! batches. Prints p50/p99 per frame and the frames per second one core sustains.
//!
//! `cargo run --release -p server --example moderation_bench [-- ROUNDS]`

// A benchmark: what it prints is its result.
#![allow(clippy::print_stdout)]

use server::moderation::Classifier;
use server::moderation::model::OpenNsfw;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(40);
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let started = Instant::now();
    let model = OpenNsfw::load(&root.join("models/open_nsfw.onnx"))?;
    println!("model loaded and optimized in {:?}", started.elapsed());
    let mut frames = Vec::new();
    for entry in std::fs::read_dir(root.join("server/tests/data/frames"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "jpg") {
            frames.push(std::fs::read(path)?);
        }
    }
    // Warm up (first runs allocate).
    for f in &frames {
        model.score(&[f])?;
    }
    println!("{} frames, {rounds} rounds each; per frame (decode + preprocess + inference):", frames.len());
    for batch in [1, 2, 4] {
        let mut times = Vec::new();
        let total = Instant::now();
        for r in 0..rounds {
            let chunk: Vec<&[u8]> = (0..batch).map(|i| &frames[(r * batch + i) % frames.len()][..]).collect();
            let t = Instant::now();
            model.score(&chunk)?;
            times.push(t.elapsed() / batch as u32);
        }
        let elapsed = total.elapsed();
        times.sort();
        let fps = (rounds * batch) as f64 / elapsed.as_secs_f64();
        println!(
            "  batch {batch}: p50 {:.1} ms, p99 {:.1} ms, {fps:.1} frames/s on one core",
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            percentile(&times, 0.99).as_secs_f64() * 1e3,
        );
    }
    Ok(())
}
