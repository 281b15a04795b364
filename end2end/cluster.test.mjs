// A two-node cluster: a real redis-server and the matcher service on free loopback
// ports, two release server nodes. Two Chromium users, each on a different node, get
// video both ways: first talking to the nodes directly, then each through its own
// HAProxy running deploy/haproxy.cfg (PROXY v2 headers, health checks) in front of
// one node, so the match, its signaling and its chat all cross Redis.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, freePort, accepts, root } from './lib/server.mjs';
import { launch, openHydrated } from './lib/browser.mjs';

const children = [];
const servers = [];
const browsers = [];
let redisUrl;

function run(cmd, args, env = {}) {
  const child = spawn(cmd, args, { cwd: root, env: { ...process.env, ...env }, stdio: 'ignore' });
  child.on('error', (e) => { throw new Error(`cannot start ${cmd}: ${e.message}`); });
  children.push(child);
  return child;
}

/** Resolves once something accepts TCP connections on 127.0.0.1:`port`. */
async function listening(port, what) {
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (await accepts(port)) return;
    if (Date.now() > deadline) throw new Error(`${what} is not listening on ${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** HAProxy on the deployment's file in front of the single node on `nodePort`. */
async function haproxyFor(nodePort) {
  const port = await freePort();
  const node = `127.0.0.1:${nodePort}`;
  // Its runtime API socket and (empty) ban list, in a folder of its own.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'letsmeet-haproxy-'));
  writeFileSync(path.join(dir, 'banned.lst'), '');
  run('haproxy', ['-f', path.join(root, 'deploy', 'haproxy.cfg'), '-db'], {
    LETSMEET_LB_BIND: `127.0.0.1:${port}`, LETSMEET_NODE1: node, LETSMEET_NODE2: node, LETSMEET_NODE3: node,
    LETSMEET_LB_ADMIN: path.join(dir, 'admin.sock'), LETSMEET_LB_BANS: path.join(dir, 'banned.lst'),
  });
  await listening(port, 'HAProxy');
  // Up once its health check (through the PROXY header) has passed.
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok) break;
    } catch { /* not yet */ }
    if (Date.now() > deadline) throw new Error('HAProxy never reached its node');
    await new Promise((r) => setTimeout(r, 200));
  }
  return `http://127.0.0.1:${port}`;
}

before(async () => {
  const matcher = path.join(root, 'target', 'release', 'matcher');
  if (!existsSync(matcher)) throw new Error(`${matcher} is missing: cargo build --release -p matcher --features service`);
  const redisPort = await freePort();
  run('redis-server', ['--bind', '127.0.0.1', '--port', String(redisPort), '--save', '', '--appendonly', 'no']);
  await listening(redisPort, 'redis-server');
  redisUrl = `redis://127.0.0.1:${redisPort}`;
  run(matcher, ['--redis-url', redisUrl, '--log', 'warn']);
});

after(async () => {
  for (const b of browsers) await b.close();
  for (const s of servers) await s.stop();
  for (const c of children) c.kill('SIGTERM');
});

async function user(url) {
  const b = await launch();
  browsers.push(b);
  const page = await b.newPage();
  await openHydrated(page, url);
  return { browser: b, page };
}

async function startVideo(page) {
  await page.click('label[for="mode-video"]');
  await page.check('#terms');
  await page.click('[data-testid="start"]');
}

async function videoFlows(page) {
  await page.waitForFunction(() => {
    const v = document.querySelector('[data-testid="remote-video"]');
    return v && v.videoWidth > 0 && v.getVideoPlaybackQuality().totalVideoFrames > 0;
  }, null, { timeout: 30_000 });
}

const said = (page, text) => page.waitForFunction(
  (t) => [...document.querySelectorAll('[data-testid="log"] li[data-author="stranger"]')].some((l) => l.textContent.includes(t)),
  text,
);

async function say(page, text) {
  await page.fill('#message', text);
  await page.press('#message', 'Enter');
}

/** Each node's `/healthz`, reached at `url`. */
const health = async (url) => (await fetch(`${url}/healthz`)).json();

/** Two users on `urls[0]` and `urls[1]` (each a different node): video both ways and
 * a line of chat each way. */
async function callAcross(urls) {
  const a = await user(urls[0]);
  const b = await user(urls[1]);
  await startVideo(a.page);
  await a.page.waitForSelector('[data-testid="chat"][data-phase="waiting"]');
  const t0 = Date.now();
  await startVideo(b.page);
  await Promise.all([videoFlows(a.page), videoFlows(b.page)]);
  const ms = Date.now() - t0;
  // Each node holds one of the two, in a match.
  for (const url of urls) assert.equal((await health(url)).in_match, 1, 'one side of the match on each node');
  await say(a.page, 'hello from node one');
  await said(b.page, 'hello from node one');
  await say(b.page, 'hi from node two');
  await said(a.page, 'hi from node two');
  for (const u of [a, b]) assert.deepEqual(u.browser.problems, []);
  await a.page.click('[data-testid="stop"]');
  await b.page.waitForSelector('[data-testid="chat"][data-phase="peer_left"]');
  return ms;
}

test('two users on two nodes get video both ways', async () => {
  const nodes = [
    await startServer({ args: ['--redis-url', redisUrl] }),
    await startServer({ args: ['--redis-url', redisUrl] }),
  ];
  servers.push(...nodes);
  const ms = await callAcross(nodes.map((n) => n.url));
  console.log(`# cluster: first frames both ways ${ms} ms after the second user started`);
});

test('the same through HAProxy, one balancer per node', async () => {
  // Nodes that take connections from 127.0.0.1 only with a PROXY header: everything
  // goes through the balancers.
  const args = ['--redis-url', redisUrl, '--trusted-proxies', '127.0.0.1'];
  const nodes = [await startServer({ args, healthy: false }), await startServer({ args, healthy: false })];
  servers.push(...nodes);
  const fronts = [await haproxyFor(nodes[0].port), await haproxyFor(nodes[1].port)];
  const ms = await callAcross(fronts);
  console.log(`# cluster through HAProxy: first frames both ways ${ms} ms after the second user started`);
});
