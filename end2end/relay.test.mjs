// "Hide my IP": two Chromium peers with relay-only ICE through a real coturn (the
// deployment's config with a loopback override) get video both ways, their selected
// candidate pairs are relayed, and neither ever sees a host or srflx candidate of
// the other. A direct call in the same run gives the time-to-first-frame baseline.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import path from 'node:path';
import { startServer, root } from './lib/server.mjs';
import { launch, openHydrated } from './lib/browser.mjs';

const SECRET = 'end-to-end-turn-secret-0123456789';
let coturn;
let server;
const browsers = [];

function freeUdpPort() {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.bind(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

/** Resolves once a STUN binding request to 127.0.0.1:`port` is answered. */
function stunAnswers(port, timeoutMs = 10_000) {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    const request = Buffer.alloc(20);
    request.writeUInt16BE(0x0001, 0); // Binding request, no attributes
    request.writeUInt32BE(0x2112a442, 4); // magic cookie; bytes 8..20: transaction id
    for (let i = 8; i < 20; i++) request[i] = i;
    const finish = (err) => { clearInterval(timer); clearTimeout(deadline); s.close(); err ? reject(err) : resolve(); };
    s.on('message', () => finish());
    s.on('error', finish);
    const timer = setInterval(() => s.send(request, port, '127.0.0.1'), 100);
    const deadline = setTimeout(() => finish(new Error(`coturn did not answer STUN on ${port}`)), timeoutMs);
  });
}

before(async () => {
  const port = await freeUdpPort();
  const relayBase = 51_000 + (process.pid % 400) * 20;
  coturn = spawn('turnserver', [
    '-c', path.join(root, 'deploy', 'turnserver.conf'),
    '--allowed-peer-ip=127.0.0.1', '--allow-loopback-peers',
    '--listening-ip=127.0.0.1', `--listening-port=${port}`, '--relay-ip=127.0.0.1',
    `--min-port=${relayBase}`, `--max-port=${relayBase + 19}`,
    `--static-auth-secret=${SECRET}`, '--no-tls', '--no-dtls', '--log-file=stdout', '--simple-log',
  ], { stdio: 'ignore' });
  coturn.on('error', (e) => { throw new Error(`cannot start turnserver: ${e.message}`); });
  await stunAnswers(port);
  server = await startServer({
    args: ['--turn-urls', `turn:127.0.0.1:${port}?transport=udp`],
    env: { LETSMEET_TURN_SECRET: SECRET },
  });
});

after(async () => {
  for (const b of browsers) await b.close();
  await server?.stop();
  coturn?.kill('SIGTERM');
});

async function user() {
  const b = await launch();
  browsers.push(b);
  const page = await b.newPage();
  await openHydrated(page, server.url);
  return { browser: b, page };
}

async function start(page, relay) {
  await page.click('label[for="mode-video"]');
  // The toggle appears once the server's welcome said a relay exists.
  await page.waitForSelector('#relay-only');
  if (relay) await page.check('#relay-only'); else await page.uncheck('#relay-only');
  await page.check('#terms');
  await page.click('[data-testid="start"]');
}

async function firstFrame(page, since) {
  await page.waitForFunction(() => {
    const v = document.querySelector('[data-testid="remote-video"]');
    return v && v.videoWidth > 0 && v.getVideoPlaybackQuality().totalVideoFrames > 0;
  }, null, { timeout: 30_000 });
  return Date.now() - since;
}

async function call(relay) {
  const a = await user();
  const b = await user();
  await start(a.page, relay);
  await a.page.waitForSelector('[data-testid="chat"][data-phase="waiting"]');
  const t0 = Date.now();
  await start(b.page, relay);
  const times = await Promise.all([firstFrame(a.page, t0), firstFrame(b.page, t0)]);
  return { a, b, ms: Math.max(...times) };
}

test('a relay-only call goes through coturn and reveals no addresses', async () => {
  const direct = await call(false);
  const relayed = await call(true);
  console.log(`# first frame: direct ${direct.ms} ms, relay-only ${relayed.ms} ms (+${relayed.ms - direct.ms} ms)`);
  for (const p of [relayed.a.page, relayed.b.page]) {
    await p.waitForSelector('[data-testid="conn-badge"][data-relayed="true"]', { timeout: 15_000 });
    assert.match(await p.textContent('[data-testid="conn-badge"]'), /^\s*relayed/);
    const types = (await p.getAttribute('[data-testid="chat"]', 'data-remote-candidates')).split(' ').filter(Boolean);
    assert.deepEqual(types, ['relay'], 'only relay candidates came from the stranger');
  }
  // "Hide my IP" holds across a reload mid-call: the renegotiated call is relayed too.
  await relayed.b.page.reload();
  await relayed.b.page.waitForSelector('body[data-hydrated="true"]');
  await Promise.all([firstFrame(relayed.a.page, Date.now()), firstFrame(relayed.b.page, Date.now())]);
  await relayed.b.page.waitForSelector('[data-testid="conn-badge"][data-relayed="true"]', { timeout: 15_000 });
  const afterReload = (await relayed.a.page.getAttribute('[data-testid="chat"]', 'data-remote-candidates')).split(' ').filter(Boolean);
  assert.deepEqual(afterReload, ['relay'], 'after the reload, still only relay candidates from the stranger');
  // The direct call, for contrast, was direct.
  await direct.a.page.waitForSelector('[data-testid="conn-badge"][data-relayed="false"]', { timeout: 15_000 });
  for (const u of [direct.a, direct.b, relayed.a, relayed.b]) assert.deepEqual(u.browser.problems, []);
});
