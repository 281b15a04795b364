// Moderation frames between separate Chromium processes through the real release
// server with its test classifier (`--moderation test`: a frame that is mostly strong
// red is flagged). Frames of both cameras reach the classifier during a call; a
// stranger whose frame is flagged is blurred, with "Show anyway" and "Report"; and a
// camera showing nothing but red gets its address banned while the stranger is told
// why.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { startServer, metricValue } from './lib/server.mjs';
import { launch, openHydrated, resultsDir, startVideo, waitPhase } from './lib/browser.mjs';
import { redCamera } from './lib/y4m.mjs';
import { forwardFrom } from './lib/forward.mjs';

// The test classifier, and frames often enough for a test: the first within 0.8 s of
// a match, then every 1.5–2.5 s.
const MODERATION = ['--moderation', 'test', '--moderation-first-ms', '800', '--moderation-every-ms', '1500,2500'];
const FRAMES = 'letsmeet_moderation_frames_total';

const browsers = [];
const servers = [];
const files = [];

after(async () => {
  for (const b of browsers) await b.close();
  for (const s of servers) {
    const exit = await s.stop();
    assert.equal(exit.code, 0, `server exit ${JSON.stringify(exit)}`);
  }
  for (const f of files) f.remove();
});

async function moderatedServer(extra = []) {
  const server = await startServer({ args: [...MODERATION, ...extra] });
  servers.push(server);
  return server;
}

/**
 * A browser on the server's page (or on `opts.url`, a forwarder's); `welcomes` collects
 * the `welcome` messages it gets.
 */
async function user(server, opts = {}) {
  const b = await launch(opts);
  browsers.push(b);
  const page = await b.newPage();
  const welcomes = [];
  page.on('websocket', (ws) => ws.on('framereceived', ({ payload }) => {
    try {
      const msg = JSON.parse(payload);
      if (msg.type === 'welcome') welcomes.push(msg);
    } catch { /* not ours to judge */ }
  }));
  await openHydrated(page, opts.url ?? server.url);
  return { browser: b, page, welcomes };
}

/** The moderation plan of the first `welcome` `u` got. */
async function planOf(u) {
  await until(() => u.welcomes.length > 0, 'welcome');
  return u.welcomes[0].moderation;
}


/** Waits until the stranger's video decodes frames. */
const remoteVideoPlays = (page) =>
  page.waitForFunction(() => {
    const v = document.querySelector('[data-testid="remote-video"]');
    return v && v.videoWidth > 0 && v.getVideoPlaybackQuality().totalVideoFrames > 0;
  }, null, { timeout: 30_000 });

/** Polls `check` until it holds, or fails with `what`. */
async function until(check, what, timeout = 20_000) {
  const deadline = Date.now() + timeout;
  while (!(await check())) {
    assert.ok(Date.now() < deadline, `timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function frameCounts(server) {
  const text = await server.metrics();
  return {
    self: metricValue(text, FRAMES, { of: 'self' }),
    peer: metricValue(text, FRAMES, { of: 'peer' }),
    flagged: metricValue(text, FRAMES, { outcome: 'flagged' }),
  };
}

/**
 * Console errors other than the frame answers the client ignores by design: Chromium
 * logs every non-2xx fetch (busy 429/503, 409 for a frame of a match that just
 * ended), and, once an address is banned, every request it can no longer make.
 */
function unexpected(problems, { banned = false } = {}) {
  return problems.filter((p) =>
    !/Failed to load resource: the server responded with a status of (409|429|503)/.test(p)
    && !(banned && /Failed to load resource: net::ERR_|WebSocket connection to .* failed/.test(p)));
}

/** The remote video's computed CSS filter. */
const remoteFilter = (page) =>
  page.$eval('[data-testid="remote-video"]', (v) => getComputedStyle(v).filter);

test('frames of both cameras reach the classifier during a video call', async () => {
  const server = await moderatedServer();
  const a = await user(server);
  const b = await user(server);
  const plan = await planOf(a);
  assert.ok(plan, 'welcome announces moderation');
  assert.equal(plan.first_ms, 800);
  assert.deepEqual(plan.every_ms, [1500, 2500]);

  await startVideo(a.page);
  await waitPhase(a.page, 'waiting');
  await startVideo(b.page);
  await Promise.all([waitPhase(a.page, 'connected'), waitPhase(b.page, 'connected')]);
  await Promise.all([remoteVideoPlays(a.page), remoteVideoPlays(b.page)]);

  // Each side sends its own camera and the stranger's video: within ~3 s of the
  // stranger's video playing, both kinds have arrived from both sides...
  await until(async () => {
    const c = await frameCounts(server);
    return c.self >= 2 && c.peer >= 2;
  }, 'own and peer frames from both browsers');
  // ...and they keep coming at the announced pace.
  const before = await frameCounts(server);
  await until(async () => {
    const c = await frameCounts(server);
    return c.self >= before.self + 2 && c.peer >= before.peer + 2;
  }, 'more frames every 1.5–2.5 s', 15_000);
  assert.equal((await frameCounts(server)).flagged, 0, 'the default fake camera is clean');
  for (const u of [a, b]) {
    assert.equal(await u.page.$('[data-testid="peer-hidden"]'), null, 'nothing is hidden');
    assert.equal(await remoteFilter(u.page), 'none');
  }

  // Stop ends sampling: no more frames from a stopped call.
  await a.page.click('[data-testid="stop"]');
  await waitPhase(a.page, 'idle');
  await waitPhase(b.page, 'peer_left');
  await new Promise((r) => setTimeout(r, 1_000)); // answers still on their way
  const stopped = await frameCounts(server);
  await new Promise((r) => setTimeout(r, 3_000));
  const later = await frameCounts(server);
  assert.equal(later.self, stopped.self, 'no own frames after the call ended');
  assert.equal(later.peer, stopped.peer, 'no peer frames after the call ended');
  for (const u of [a, b]) assert.deepEqual(unexpected(u.browser.problems), []);
});

test('a stranger whose frame is flagged is blurred, with Show anyway and Report', async () => {
  // No cooldown: the same two meet again right after a skip.
  const server = await moderatedServer(['--rematch-cooldown-secs', '0']);
  const a = await user(server);
  const b = await user(server);
  // b's frames of the stranger are answered "flagged", as the classifier would answer
  // a camera breaking the rules (a's own frames still go to the real classifier).
  const peerFrames = [];
  await b.page.route((url) => url.searchParams.get('of') === 'peer', (route) => {
    const req = route.request();
    const body = req.postDataBuffer();
    peerFrames.push({
      method: req.method(),
      type: req.headers()['content-type'],
      auth: req.headers().authorization ?? '',
      matchId: new URL(req.url()).searchParams.get('match_id') ?? '',
      // null when the browser did not hand the body over to the route
      jpeg: body ? body.length <= 64 * 1024 && body[0] === 0xff && body[1] === 0xd8 : null,
    });
    return route.fulfill({ status: 200, contentType: 'application/json', body: '{"flagged":true}' });
  });

  await startVideo(a.page);
  await waitPhase(a.page, 'waiting');
  await startVideo(b.page);
  await Promise.all([waitPhase(a.page, 'connected'), waitPhase(b.page, 'connected')]);
  await remoteVideoPlays(b.page);

  // Blurred at once, with the reason and two choices.
  const hidden = await b.page.waitForSelector('[data-testid="peer-hidden"]', { timeout: 15_000 });
  assert.match(await hidden.textContent(), /This video was hidden because it may break the rules\./);
  assert.ok(await hidden.$('[role="alert"]'), 'announced');
  assert.match(await remoteFilter(b.page), /blur\(/);
  assert.equal(await b.page.getAttribute('[data-testid="remote-video"]', 'data-hidden'), 'true');
  assert.equal(await a.page.$('[data-testid="peer-hidden"]'), null, "a's view is not hidden");
  // What went out: a POSTed JPEG (at most 64 KiB) with the session's token, for this match.
  const first = peerFrames[0];
  assert.equal(first.method, 'POST');
  assert.equal(first.type, 'image/jpeg');
  assert.notEqual(first.jpeg, false, 'a JPEG of at most 64 KiB');
  assert.match(first.auth, /^Bearer [0-9a-f-]{36}$/);
  assert.match(first.matchId, /^[0-9a-f-]{36}$/);
  await b.page.screenshot({ path: path.join(resultsDir, 'moderation-peer-hidden.png') });

  // Keyboard: Report sends the usual report (nudity); focus moves to Show anyway.
  await b.page.focus('[data-testid="report-hidden"]');
  await b.page.keyboard.press('Enter');
  await b.page.waitForSelector('[data-testid="log"] li[data-author="system"]:has-text("Thanks. Your report was sent.")');
  assert.equal(await b.page.textContent('[data-testid="report-hidden"]'), 'Reported');
  assert.ok(await b.page.isDisabled('[data-testid="report-hidden"]'));
  assert.equal(await b.page.evaluate(() => document.activeElement?.dataset.testid), 'show-anyway');
  await until(async () => metricValue(await server.metrics(), 'letsmeet_reports_total') >= 1, 'the report reached the server');

  // Show anyway: unblurred for the rest of this match, whatever later frames say.
  await b.page.keyboard.press('Enter');
  await b.page.waitForSelector('[data-testid="peer-hidden"]', { state: 'detached' });
  assert.equal(await remoteFilter(b.page), 'none');
  const seen = peerFrames.length;
  await until(() => peerFrames.length > seen, 'another frame of the stranger, flagged again', 10_000);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await b.page.$('[data-testid="peer-hidden"]'), null, 'still shown');

  // A new match starts clear, and is blurred again on its own flagged frame.
  await b.page.click('[data-testid="next"]');
  await b.page.click('[data-testid="next"]'); // second press confirms
  await waitPhase(a.page, 'peer_left');
  await a.page.click('[data-testid="next"]');
  await Promise.all([waitPhase(a.page, 'connected'), waitPhase(b.page, 'connected')]);
  await b.page.waitForSelector('[data-testid="peer-hidden"]', { timeout: 15_000 });
  assert.match(await remoteFilter(b.page), /blur\(/);
  assert.notEqual(peerFrames.at(-1).matchId, first.matchId, 'frames of the new match name it');
  for (const u of [a, b]) assert.deepEqual(unexpected(u.browser.problems), []);
});

test('a camera that breaks the rules gets its address banned, and the stranger is told why', async () => {
  // Without the gate: with it, the red camera's first frame would ban it before it met
  // anyone (the server's other tests cover that); here it meets b first.
  const server = await moderatedServer(['--moderation-gate', 'false']);
  const red = redCamera();
  files.push(red);
  // Each browser reaches the server from its own address (a ban is per address).
  const [viaA, viaB] = [await forwardFrom('127.0.0.21', server.port), await forwardFrom('127.0.0.22', server.port)];
  files.push({ remove: () => { viaA.close(); viaB.close(); } });
  // b (the default fake camera) waits first; a, whose camera shows only red, joins.
  const b = await user(server, { url: viaB.url });
  await startVideo(b.page);
  await waitPhase(b.page, 'waiting');
  const a = await user(server, { cameraFile: red.file, url: viaA.url });
  assert.equal((await planOf(a))?.gate, false);
  await startVideo(a.page);

  // b is told, in the status line, the chat log and on the video.
  await b.page.waitForSelector(
    '[data-testid="status"]:has-text("Stranger was removed for breaking the rules.")',
    { timeout: 30_000 },
  );
  await waitPhase(b.page, 'peer_left');
  assert.equal(await b.page.$('[data-testid="peer-hidden"]'), null, 'the veil goes with the match');
  await b.page.screenshot({ path: path.join(resultsDir, 'moderation-stranger-removed.png') });

  // a sees why it cannot chat, and until when.
  await waitPhase(a.page, 'banned', 30_000);
  assert.match(await a.page.textContent('[data-testid="status"]'), /banned until/);
  assert.ok(await a.page.isDisabled('[data-testid="next"]'), 'Start does nothing while banned');
  await a.page.screenshot({ path: path.join(resultsDir, 'moderation-banned.png') });
  const counts = await frameCounts(server);
  assert.ok(counts.flagged >= 1, `the red camera was flagged: ${JSON.stringify(counts)}`);
  const bans = metricValue(await server.metrics(), 'letsmeet_bans_total', { kind: 'model' });
  assert.equal(bans, 1, 'one ban, of a');

  // a's address is refused at TCP accept: a reload cannot reach the server, nor can a
  // brand-new browser from that address...
  await assert.rejects(a.page.reload({ timeout: 15_000 }), /net::ERR_/, 'a reload of a banned page');
  const fresh = await launch();
  browsers.push(fresh);
  await assert.rejects((await fresh.newPage()).goto(viaA.url, { timeout: 15_000 }), /net::ERR_/);
  assert.ok(metricValue(await server.metrics(), 'letsmeet_banned_connections_refused_total') >= 2);
  // ...while b's address is still served.
  const page = await fetch(viaB.url);
  assert.equal(page.status, 200, "b's address is not banned");
  await page.text();

  assert.deepEqual(unexpected(a.browser.problems, { banned: true }), []);
  assert.deepEqual(unexpected(b.browser.problems, { banned: true }), []);
});
