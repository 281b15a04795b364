// The states around a chat that are not a chat: a browser without WebRTC, and a
// server restart under a waiting user.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import { launch, openHydrated } from './lib/browser.mjs';

const browsers = [];
const servers = [];

after(async () => {
  for (const b of browsers) await b.close();
  for (const s of servers) await s.stop();
});

async function user(url, initScript) {
  const b = await launch();
  browsers.push(b);
  const page = await b.newPage();
  if (initScript) await page.addInitScript(initScript);
  await openHydrated(page, url);
  return { browser: b, page };
}

async function start(page, mode) {
  await page.click(`label[for="mode-${mode}"]`);
  if (!(await page.isChecked('#terms'))) await page.check('#terms');
  await page.click('[data-testid="start"]');
  await page.waitForSelector('[data-testid="chat"]');
}

const waitPhase = (page, p, timeout = 20_000) =>
  page.waitForSelector(`[data-testid="chat"][data-phase="${p}"]`, { timeout });

test('a browser without WebRTC is told so and offered text chat', async () => {
  const server = await startServer();
  servers.push(server);
  const a = await user(server.url, () => {
    delete window.RTCPeerConnection;
    delete window.webkitRTCPeerConnection;
  });
  await start(a.page, 'video');
  await a.page.waitForSelector('[data-testid="media-problem"]', { timeout: 10_000 });
  assert.match(await a.page.textContent('[data-testid="media-problem"]'), /This browser can't do video chat/);
  await a.page.click('text=Use text chat instead');
  await waitPhase(a.page, 'waiting');
  assert.equal(await a.page.getAttribute('[data-testid="chat"]', 'data-mode'), 'text');
  assert.deepEqual(a.browser.problems, []);
});

test('after a server restart a waiting user is queued again and gets matched', async () => {
  const first = await startServer();
  const a = await user(first.url);
  await start(a.page, 'text');
  await waitPhase(a.page, 'waiting');
  // SIGTERM: the server closes every socket with 1012 and exits; a new one starts
  // on the same port (sessions were in memory, so the client queues afresh).
  const exit = await first.stop();
  assert.equal(exit.code, 0);
  const second = await startServer({ port: first.port });
  servers.push(second);
  const deadline = Date.now() + 20_000;
  while ((await second.health()).waiting !== 1) {
    assert.ok(Date.now() < deadline, 'the user is queued on the new server');
    await new Promise((r) => setTimeout(r, 100));
  }
  await waitPhase(a.page, 'waiting');
  const b = await user(second.url);
  await start(b.page, 'text');
  await Promise.all([waitPhase(a.page, 'connected'), waitPhase(b.page, 'connected')]);
  // While the server was down the browser may log that a reconnect attempt failed;
  // nothing else may appear.
  const unexpected = a.browser.problems.filter((p) => !/WebSocket connection to .* failed/.test(p));
  assert.deepEqual(unexpected, []);
  assert.deepEqual(b.browser.problems, []);
});

test('a chat cut by a server restart ends clearly and New chat finds a stranger again', async () => {
  const first = await startServer();
  const a = await user(first.url);
  const b = await user(first.url);
  await start(a.page, 'text');
  await start(b.page, 'text');
  await Promise.all([waitPhase(a.page, 'connected'), waitPhase(b.page, 'connected')]);
  assert.equal((await first.stop()).code, 0);
  const second = await startServer({ port: first.port });
  servers.push(second);
  // The new server never knew the chat: both are told it ended...
  await Promise.all([waitPhase(a.page, 'peer_left'), waitPhase(b.page, 'peer_left')]);
  assert.match(await a.page.textContent('[data-testid="log"]'), /Connection lost/);
  // ...and one press each pairs them again on the new server, with their preferences.
  await a.page.click('[data-testid="next"]');
  await b.page.click('[data-testid="next"]');
  await Promise.all([waitPhase(a.page, 'connected'), waitPhase(b.page, 'connected')]);
  for (const u of [a, b]) {
    assert.deepEqual(u.browser.problems.filter((p) => !/WebSocket connection to .* failed/.test(p)), []);
  }
});
