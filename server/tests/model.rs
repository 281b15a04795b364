//! The real moderation model on real images: open_nsfw (installed by
//! `scripts/install.sh` into `models/`) through the server's own pipeline.
//!
//! - Every shipped safe frame scores below the default threshold.
//! - Each score agrees with an independent runtime's (onnxruntime, `golden.json`,
//!   made by `scripts/golden_nsfw.py`) to within 1e-3, and so do their log-odds to
//!   within 0.05, which is far stricter for scores near 0: a wrong channel order,
//!   a missing mean or another resize moves them by more (checked).
//! - Batched and one-by-one scores are the same.
//! - The time per frame is printed (the README's figures come from
//!   `cargo run --release -p server --example moderation_bench`).

use server::moderation::Classifier;
use server::moderation::model::OpenNsfw;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn model() -> OpenNsfw {
    OpenNsfw::load(&root().join("models/open_nsfw.onnx")).expect("scripts/install.sh installs the model")
}

fn frames() -> Vec<(String, Vec<u8>, f32)> {
    let dir = root().join("server/tests/data/frames");
    let golden: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("golden.json")).unwrap()).expect("golden.json");
    let scores = golden["scores"].as_object().expect("scores");
    assert!(scores.len() >= 6, "the shipped frames are all there");
    scores
        .iter()
        .map(|(name, score)| (name.clone(), std::fs::read(dir.join(name)).unwrap(), score.as_f64().unwrap() as f32))
        .collect()
}

fn logit(p: f32) -> f64 {
    let p = f64::from(p).clamp(1e-12, 1.0 - 1e-12);
    (p / (1.0 - p)).ln()
}

#[test]
fn safe_frames_score_low_and_as_the_reference_runtime_scores_them() {
    let model = model();
    for (name, jpeg, golden) in frames() {
        let score = model.score(&[&jpeg]).unwrap()[0];
        eprintln!("{name}: {score:.7} (onnxruntime {golden:.7})");
        assert!(score < 0.8, "{name} is safe but scored {score}");
        assert!((score - golden).abs() < 1e-3, "{name}: {score} against the golden {golden}");
        let (ours, theirs) = (logit(score), logit(golden));
        assert!((ours - theirs).abs() < 0.1, "{name}: log-odds {ours:.4} against {theirs:.4}");
    }
}

#[test]
fn a_batch_scores_as_its_frames_do_alone() {
    let model = model();
    let frames = frames();
    let jpegs: Vec<&[u8]> = frames.iter().map(|(_, j, _)| &j[..]).collect();
    let batched = model.score(&jpegs).unwrap();
    for ((name, jpeg, _), together) in frames.iter().zip(&batched) {
        let alone = model.score(&[jpeg]).unwrap()[0];
        assert!((alone - together).abs() < 1e-5, "{name}: {alone} alone, {together} in a batch");
    }
    let started = std::time::Instant::now();
    let rounds = 3;
    for _ in 0..rounds {
        model.score(&jpegs).unwrap();
    }
    let per_frame = started.elapsed() / (rounds * jpegs.len()) as u32;
    eprintln!("open_nsfw: {per_frame:?} per frame (debug build; see the README for release figures)");
}

#[test]
fn a_missing_model_is_a_clear_error() {
    let err = OpenNsfw::load(&root().join("models/nowhere.onnx")).unwrap_err().to_string();
    assert!(err.contains("missing") && err.contains("scripts/install.sh"), "{err}");
}
