// A hundred Next presses between two real Chromium processes: every match builds a
// new RTCPeerConnection, and nothing of the old ones may stay behind (peer
// connections, event listeners, DOM nodes, JS heap, WASM memory).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import { launch, openHydrated, startVideo, waitPhase } from './lib/browser.mjs';

const ROUNDS = Number(process.env.LEAK_ROUNDS ?? 100);
const WARMUP = 10;

let server;
const browsers = [];

before(async () => {
  // No cooldown: the same two people may meet again right after a skip.
  server = await startServer({ args: ['--rematch-cooldown-secs', '0'] });
});

after(async () => {
  for (const b of browsers) await b.close();
  const exit = await server?.stop();
  assert.equal(exit?.code, 0, `server exit ${JSON.stringify(exit)}`);
});

async function user() {
  const b = await launch();
  browsers.push(b);
  const page = await b.newPage();
  await page.addInitScript(() => {
    // Weak references only: counting must not itself keep anything alive.
    const pcs = [];
    const Native = window.RTCPeerConnection;
    window.RTCPeerConnection = function (...args) {
      const pc = new Native(...args);
      pcs.push(new WeakRef(pc));
      return pc;
    };
    window.RTCPeerConnection.prototype = Native.prototype;
    Object.setPrototypeOf(window.RTCPeerConnection, Native);
    window.__pcStats = () => ({
      created: pcs.length,
      open: pcs.filter((r) => r.deref() && r.deref().signalingState !== 'closed').length,
    });
    // The WASM module's linear memory (it grows when Rust allocations leak).
    for (const name of ['instantiate', 'instantiateStreaming']) {
      const orig = WebAssembly[name];
      WebAssembly[name] = async (...args) => {
        const result = await orig.apply(WebAssembly, args);
        const memory = (result.instance ?? result).exports?.memory;
        if (memory) window.__wasmMemory = memory;
        return result;
      };
    }
  });
  await openHydrated(page, server.url);
  const cdp = await page.context().newCDPSession(page);
  return { browser: b, page, cdp };
}


/** Remote video is decoding on `page`. */
const videoFlows = (page) =>
  page.waitForFunction(() => {
    const v = document.querySelector('[data-testid="remote-video"]');
    return v && v.videoWidth > 0 && v.getVideoPlaybackQuality().totalVideoFrames > 0;
  }, null, { timeout: 20_000 });

/** Memory and object counts after a full garbage collection. */
async function measure({ page, cdp }) {
  await cdp.send('HeapProfiler.collectGarbage');
  const dom = await cdp.send('Memory.getDOMCounters');
  const heap = await cdp.send('Runtime.getHeapUsage');
  const inPage = await page.evaluate(() => ({
    pcs: window.__pcStats(),
    wasm: window.__wasmMemory?.buffer.byteLength ?? 0,
    videos: document.querySelectorAll('video').length,
  }));
  return { nodes: dom.nodes, listeners: dom.jsEventListeners, heap: heap.usedSize, ...inPage };
}

test(`${ROUNDS} Next presses leave nothing behind`, async () => {
  const a = await user();
  const b = await user();
  await startVideo(a.page);
  await waitPhase(a.page, 'waiting');
  await startVideo(b.page);
  await Promise.all([videoFlows(a.page), videoFlows(b.page)]);

  let warm;
  const t0 = Date.now();
  for (let round = 1; round <= ROUNDS; round++) {
    // a skips (Esc twice while chatting), b starts a new chat; they meet again.
    await waitPhase(a.page, 'connected');
    await a.page.keyboard.press('Escape');
    await a.page.keyboard.press('Escape');
    await waitPhase(b.page, 'peer_left');
    await b.page.click('[data-testid="next"]');
    await Promise.all([waitPhase(a.page, 'connected'), waitPhase(b.page, 'connected')]);
    if (round === WARMUP) warm = [await measure(a), await measure(b)];
  }
  const perRound = (Date.now() - t0) / ROUNDS;
  // The last match still carries video both ways.
  await Promise.all([videoFlows(a.page), videoFlows(b.page)]);
  const end = [await measure(a), await measure(b)];
  for (const [i, u] of [a, b].entries()) {
    const w = warm[i];
    const e = end[i];
    console.log(`# leak check ${i ? 'b' : 'a'} after ${WARMUP} → ${ROUNDS} matches: ` +
      `peer connections created ${w.pcs.created} → ${e.pcs.created}, open ${e.pcs.open}; ` +
      `listeners ${w.listeners} → ${e.listeners}; DOM nodes ${w.nodes} → ${e.nodes}; ` +
      `JS heap ${(w.heap / 1e6).toFixed(2)} → ${(e.heap / 1e6).toFixed(2)} MB; ` +
      `WASM memory ${(w.wasm / 1048576).toFixed(2)} → ${(e.wasm / 1048576).toFixed(2)} MiB`);
    assert.ok(e.pcs.created >= ROUNDS, 'every match built its own peer connection');
    assert.equal(e.pcs.open, 1, 'only the current match has an open peer connection');
    assert.equal(e.videos, w.videos, 'no video element piles up');
    assert.ok(e.listeners - w.listeners <= 10, `event listeners grew: ${w.listeners} → ${e.listeners}`);
    assert.ok(e.nodes - w.nodes <= 100, `DOM nodes grew: ${w.nodes} → ${e.nodes}`);
    assert.ok(e.heap - w.heap <= 1e6, `JS heap grew: ${w.heap} → ${e.heap}`);
    assert.ok(e.wasm - w.wasm <= 1048576, `WASM memory grew: ${w.wasm} → ${e.wasm}`);
    assert.deepEqual(u.browser.problems, []);
  }
  console.log(`# ${ROUNDS} rounds of next → matched → connected: ${perRound.toFixed(0)} ms per round`);
});
