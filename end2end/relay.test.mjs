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
  await new Promise((r) => setTimeout(r, 700));
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
  // The direct call, for contrast, was direct.
  await direct.a.page.waitForSelector('[data-testid="conn-badge"][data-relayed="false"]', { timeout: 15_000 });
  for (const u of [direct.a, direct.b, relayed.a, relayed.b]) assert.deepEqual(u.browser.problems, []);
});
