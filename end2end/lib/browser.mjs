// Headless Debian Chromium through playwright-core, with every console error and
// page error collected so tests can fail on them.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { root } from './server.mjs';

export const resultsDir = path.join(root, 'end2end', 'test-results');
mkdirSync(resultsDir, { recursive: true });

const FLAGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  // Permission prompts answer "allow"; autoplay needs no click (as after a reload).
  '--use-fake-ui-for-media-stream', '--autoplay-policy=no-user-gesture-required',
];

/**
 * Launches one Chromium process (its own profile directory). `fakeDevices`: a fake
 * camera and microphone (otherwise the machine's, i.e. none here). `cameraFile`: a
 * Y4M (or MJPEG) file the fake camera plays in a loop instead of its own picture
 * (see `y4m.mjs`); this browser only.
 */
export async function launch({ extraArgs = [], fakeDevices = true, cameraFile } = {}) {
  if (cameraFile && !fakeDevices) throw new Error('a camera file needs the fake devices');
  const profile = mkdtempSync(path.join(os.tmpdir(), 'letsmeet-e2e-'));
  const camera = cameraFile ? [`--use-file-for-fake-video-capture=${cameraFile}`] : [];
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [...FLAGS, ...(fakeDevices ? ['--use-fake-device-for-media-stream', ...camera] : []), ...extraArgs],
    viewport: { width: 1280, height: 800 },
  });
  const problems = [];
  const watch = (page, label) => {
    page.on('console', (msg) => {
      if (msg.type() === 'error') problems.push(`[${label}] console error: ${msg.text()}`);
    });
    page.on('pageerror', (err) => problems.push(`[${label}] page error: ${err.message}`));
  };
  context.pages().forEach((p, i) => watch(p, `page${i}`));
  let n = context.pages().length;
  context.on('page', (p) => watch(p, `page${n++}`));
  return {
    context,
    problems,
    async newPage() {
      return context.pages().find((p) => p.url() === 'about:blank') ?? context.newPage();
    },
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Opens `url` and waits until the WASM has hydrated the page. */
export async function openHydrated(page, url) {
  await page.goto(url);
  await page.waitForSelector('body[data-hydrated="true"]', { timeout: 20_000 });
}

/** Picks video on the landing page, accepts the rules, and starts a chat. */
export async function startVideo(page) {
  await page.click('label[for="mode-video"]');
  if (!(await page.isChecked('#terms'))) await page.check('#terms');
  await page.click('[data-testid="start"]');
  await page.waitForSelector('[data-testid="chat"]');
}

/** Waits until the chat page shows phase `p`. */
export const waitPhase = (page, p, timeout = 20_000) =>
  page.waitForSelector(`[data-testid="chat"][data-phase="${p}"]`, { timeout });
