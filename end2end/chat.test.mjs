// Real chats between separate headless Chromium processes (fake camera and
// microphone) through the real release server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { startServer } from './lib/server.mjs';
import { launch, openHydrated, resultsDir } from './lib/browser.mjs';

let server;
const browsers = [];

before(async () => {
  server = await startServer();
});

after(async () => {
  for (const b of browsers) await b.close();
  const exit = await server?.stop();
  assert.equal(exit?.code, 0, `server exit ${JSON.stringify(exit)}`);
});

async function user(opts = {}) {
  const b = await launch(opts);
  browsers.push(b);
  const page = await b.newPage();
  // Count camera requests, so text mode can prove it never asked.
  await page.addInitScript(() => {
    window.__gumCalls = 0;
    const md = navigator.mediaDevices;
    if (md?.getUserMedia) {
      const orig = md.getUserMedia.bind(md);
      md.getUserMedia = (...args) => { window.__gumCalls += 1; return orig(...args); };
    }
  });
  await openHydrated(page, server.url);
  return { browser: b, page };
}

async function start(page, { mode = 'video', interests = [] } = {}) {
  await page.click(`label[for="mode-${mode}"]`);
  for (const i of interests) {
    await page.fill('#interests', i);
    await page.keyboard.press('Enter');
  }
  if (!(await page.isChecked('#terms'))) await page.check('#terms');
  await page.click('[data-testid="start"]');
  await page.waitForSelector('[data-testid="chat"]');
}

const phase = (page) => page.getAttribute('[data-testid="chat"]', 'data-phase');
const waitPhase = (page, p, timeout = 20_000) =>
  page.waitForSelector(`[data-testid="chat"][data-phase="${p}"]`, { timeout });

/** Waits until the stranger's video decodes frames; returns ms since `since`. */
async function waitForRemoteVideo(page, since) {
  await page.waitForFunction(() => {
    const v = document.querySelector('[data-testid="remote-video"]');
    return v && v.videoWidth > 0 && v.getVideoPlaybackQuality().totalVideoFrames > 0;
  }, null, { timeout: 30_000 });
  return Date.now() - since;
}

async function inboundKbps(page) {
  const el = await page.waitForSelector('[data-testid="conn-badge"][data-kbps]', { timeout: 15_000 });
  return Number(await el.getAttribute('data-kbps'));
}

async function lines(page, author) {
  return page.$$eval(`[data-testid="log"] li[data-author="${author}"]`, (els) => els.map((e) => e.textContent.replace(/^(You|Stranger): /, '')));
}

async function say(page, text) {
  await page.fill('#message', text);
  await page.press('#message', 'Enter');
}

test('two video users see each other, chat, skip, stop and survive a reload', async () => {
  const a = await user();
  const b = await user();
  await start(a.page);
  await waitPhase(a.page, 'waiting');
  const clicked = Date.now();
  await start(b.page);
  const [ta, tb] = await Promise.all([waitForRemoteVideo(a.page, clicked), waitForRemoteVideo(b.page, clicked)]);
  console.log(`# start-to-first-frame: ${tb} ms (answerer), ${ta} ms (offerer)`);
  await waitPhase(a.page, 'connected');
  await waitPhase(b.page, 'connected');
  assert.ok((await inboundKbps(a.page)) > 0, 'a receives RTP');
  assert.ok((await inboundKbps(b.page)) > 0, 'b receives RTP');
  assert.match(await a.page.textContent('[data-testid="conn-badge"]'), /^\s*direct/);
  await a.page.screenshot({ path: path.join(resultsDir, 'video-connected.png') });
  await a.page.setViewportSize({ width: 375, height: 740 });
  await a.page.screenshot({ path: path.join(resultsDir, 'video-chat-mobile.png') });
  await a.page.setViewportSize({ width: 1280, height: 800 });

  // Chat both ways, with the typing indicator.
  await a.page.fill('#message', 'hel');
  await b.page.waitForSelector('[data-testid="typing"]:has-text("Stranger is typing")');
  await a.page.press('#message', 'Enter');
  await b.page.waitForFunction(() => document.querySelector('[data-testid="log"] li[data-author="stranger"]')?.textContent.includes('hel'));
  await say(b.page, 'hi there 👋');
  await a.page.waitForFunction(() => [...document.querySelectorAll('[data-testid="log"] li[data-author="stranger"]')].some((l) => l.textContent.includes('hi there')));
  assert.deepEqual(await lines(b.page, 'me'), ['hi there 👋']);
  await b.page.waitForFunction(() => !document.querySelector('[data-testid="typing"]').textContent.includes('typing'));

  // A reload mid-chat resumes the same match and video comes back.
  const reloaded = Date.now();
  await b.page.reload();
  await b.page.waitForSelector('body[data-hydrated="true"]');
  const tr = await waitForRemoteVideo(b.page, reloaded);
  await waitForRemoteVideo(a.page, reloaded);
  console.log(`# reload-to-video-back: ${tr} ms`);
  await waitPhase(a.page, 'connected');
  await say(a.page, 'welcome back');
  await b.page.waitForFunction(() => [...document.querySelectorAll('[data-testid="log"] li[data-author="stranger"]')].some((l) => l.textContent.includes('welcome back')));

  // Next: a is paired with a third user; b sees that the stranger left.
  const c = await user();
  await start(c.page);
  await a.page.click('[data-testid="next"]');
  await a.page.click('[data-testid="next"]'); // second press confirms
  await waitPhase(b.page, 'peer_left');
  assert.match(await b.page.textContent('[data-testid="status"]'), /Stranger has disconnected/);
  assert.ok((await lines(b.page, 'stranger')).length > 0, 'history is kept after the stranger leaves');
  await waitForRemoteVideo(c.page, Date.now());
  await waitPhase(a.page, 'connected');
  await waitPhase(c.page, 'connected');

  // Stop returns to idle; the camera is released.
  await c.page.click('[data-testid="stop"]');
  await waitPhase(c.page, 'idle');
  await waitPhase(a.page, 'peer_left');
  for (const u of [a, b, c]) assert.deepEqual(u.browser.problems, []);
});

test('two text users chat without any camera or microphone request', async () => {
  const a = await user();
  const b = await user();
  await start(a.page, { mode: 'text', interests: ['chess'] });
  await start(b.page, { mode: 'text', interests: ['Chess', 'go'] });
  await waitPhase(a.page, 'connected');
  await waitPhase(b.page, 'connected');
  assert.match(await a.page.textContent('[data-testid="status"]'), /You both like chess/);
  await say(a.page, 'e4');
  await b.page.waitForFunction(() => document.querySelector('[data-testid="log"] li[data-author="stranger"]')?.textContent.includes('e4'));
  await say(b.page, 'c5');
  await a.page.waitForFunction(() => document.querySelector('[data-testid="log"] li[data-author="stranger"]')?.textContent.includes('c5'));
  assert.equal(await a.page.evaluate(() => window.__gumCalls), 0);
  assert.equal(await b.page.evaluate(() => window.__gumCalls), 0);
  assert.equal(await a.page.$('[data-testid="remote-video"]'), null, 'no video in text mode');
  await a.page.screenshot({ path: path.join(resultsDir, 'text-chat.png') });
  await a.page.setViewportSize({ width: 375, height: 740 });
  await a.page.screenshot({ path: path.join(resultsDir, 'text-chat-mobile.png') });
  await a.page.click('[data-testid="stop"]');
  await waitPhase(b.page, 'peer_left');
  for (const u of [a, b]) assert.deepEqual(u.browser.problems, []);
});

test('a user without a camera is offered text mode', async () => {
  // No fake devices: this machine has no camera or microphone.
  const a = await user({ fakeDevices: false });
  await start(a.page);
  await a.page.waitForSelector('[data-testid="media-problem"]', { timeout: 10_000 });
  assert.match(await a.page.textContent('[data-testid="media-problem"]'), /No camera or microphone was found/);
  await a.page.click('text=Use text chat instead');
  await waitPhase(a.page, 'waiting');
  assert.equal(await a.page.getAttribute('[data-testid="chat"]', 'data-mode'), 'text');
  // The failed getUserMedia logs nothing as an error on the console.
  assert.deepEqual(a.browser.problems, []);
});
