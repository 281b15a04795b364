// Camera pictures for Chromium's file-backed fake camera
// (`--use-file-for-fake-video-capture=FILE`, see `launch({ cameraFile })`): Y4M files,
// I420 (4:2:0, 8 bit), which Chromium plays in a loop.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** An sRGB colour as BT.601 limited-range Y'CbCr (what Chromium reads an I420 file as). */
export function yuv([r, g, b]) {
  const clamp = (x) => Math.min(255, Math.max(0, Math.round(x)));
  return [
    clamp(16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255),
    clamp(128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255),
    clamp(128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255),
  ];
}

/**
 * Writes a Y4M video of `frames` identical frames filled with `rgb` into a fresh
 * temporary directory; returns `{ file, remove() }`. Pure red ([255, 0, 0]) is
 * Y=81, U=90, V=240.
 */
export function solidY4m({ rgb = [255, 0, 0], width = 320, height = 240, frames = 10, fps = 30 } = {}) {
  if (width % 2 || height % 2) throw new Error('I420 needs an even width and height');
  const [y, u, v] = yuv(rgb);
  const luma = width * height;
  const chroma = (width / 2) * (height / 2);
  const picture = Buffer.alloc(luma + 2 * chroma);
  picture.fill(y, 0, luma);
  picture.fill(u, luma, luma + chroma);
  picture.fill(v, luma + chroma);
  const parts = [Buffer.from(`YUV4MPEG2 W${width} H${height} F${fps}:1 Ip A1:1 C420jpeg\n`)];
  for (let i = 0; i < frames; i++) parts.push(Buffer.from('FRAME\n'), picture);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'letsmeet-y4m-'));
  const file = path.join(dir, `solid-${rgb.join('-')}-${width}x${height}.y4m`);
  writeFileSync(file, Buffer.concat(parts));
  return { file, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A camera that shows nothing but pure red (the test classifier flags it). */
export const redCamera = () => solidY4m({ rgb: [255, 0, 0] });
