// A browser whose WebSockets are blocked falls back to server-sent events and POSTs
// by itself, and still has a video call, both ways, and chat with a normal browser.
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

/** A user in a browser of its own; `blocked`: its WebSocket upgrades never get through. */
async function user({ blocked = false } = {}) {
  const b = await launch();
  browsers.push(b);
  const page = await b.newPage();
  const upgrades = [];
  if (blocked) {
    // What a filtering proxy does to the upgrade: the socket closes before a word.
    await page.routeWebSocket(/\/ws/, (ws) => { upgrades.push(ws.url()); ws.close({ code: 1011, reason: 'blocked' }); });
  }
  return { browser: b, page, upgrades };
}

async function start(page) {
  await page.click('label[for="mode-video"]');
  if (!(await page.isChecked('#terms'))) await page.check('#terms');
  await page.click('[data-testid="start"]');
  await page.waitForSelector('[data-testid="chat"]');
}

async function waitForRemoteVideo(page) {
  await page.waitForFunction(() => {
    const v = document.querySelector('[data-testid="remote-video"]');
    return v && v.videoWidth > 0 && v.getVideoPlaybackQuality().totalVideoFrames > 0;
  }, null, { timeout: 30_000 });
}

async function say(page, text) {
  await page.fill('#message', text);
  await page.press('#message', 'Enter');
}

const strangerLines = (page) =>
  page.$$eval('[data-testid="log"] li[data-author="stranger"]', (els) => els.map((e) => e.textContent.replace(/^Stranger: /, '')));

test('a browser without WebSockets falls back by itself, and calls and chats with a normal one', async () => {
  const a = await user({ blocked: true });
  const b = await user();
  const loaded = Date.now();
  await openHydrated(a.page, server.url);
  await a.page.waitForSelector('[data-testid="online"][data-transport="fallback"]', { timeout: 20_000 });
  await a.page.waitForFunction(() => document.querySelector('[data-testid="online"]')?.dataset.count !== undefined);
  const toWelcome = Date.now() - loaded;
  console.log(`# page load to welcome with WebSockets blocked: ${toWelcome} ms (${a.upgrades.length} WebSocket attempts)`);
  assert.ok(a.upgrades.length >= 2, 'it tried the WebSocket first');
  assert.match(await a.page.textContent('[data-testid="online"]'), /via HTTP/);
  assert.equal(await a.page.evaluate(() => sessionStorage.getItem('letsmeet.transport')), 'fallback');

  await openHydrated(b.page, server.url);
  assert.equal(await b.page.getAttribute('[data-testid="online"]', 'data-transport'), 'websocket');
  await start(a.page);
  await start(b.page);
  await Promise.all([waitForRemoteVideo(a.page), waitForRemoteVideo(b.page)]);
  await say(a.page, 'hello over http');
  await say(b.page, 'hello over a websocket');
  await b.page.waitForFunction(() => [...document.querySelectorAll('[data-testid="log"] li[data-author="stranger"]')].some((l) => l.textContent.includes('hello over http')));
  await a.page.waitForFunction(() => [...document.querySelectorAll('[data-testid="log"] li[data-author="stranger"]')].some((l) => l.textContent.includes('hello over a websocket')));
  assert.deepEqual(await strangerLines(a.page), ['hello over a websocket']);
  assert.deepEqual(await strangerLines(b.page), ['hello over http']);
  await a.page.screenshot({ path: path.join(resultsDir, 'fallback-chat.png') });

  // A reload keeps the choice for the tab (no second round of failed upgrades) and
  // resumes the chat.
  const before = a.upgrades.length;
  await a.page.reload();
  await a.page.waitForSelector('body[data-hydrated="true"]');
  await a.page.waitForSelector('[data-testid="online"][data-transport="fallback"]');
  await waitForRemoteVideo(a.page);
  assert.equal(a.upgrades.length, before, 'the tab remembered the fallback');
  assert.deepEqual(a.browser.problems.filter((p) => !/WebSocket/.test(p)), []);
  assert.deepEqual(b.browser.problems, []);
});
