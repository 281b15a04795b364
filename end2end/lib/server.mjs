// Starts the real release server on a free loopback port and stops it afterwards.
import { spawn } from 'node:child_process';
import { createServer, connect } from 'node:net';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
export function accepts(port) {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
  });
}

/**
 * The value of a Prometheus counter or gauge in `text` (a /metrics answer): the sum of
 * its series whose labels include `labels` (0 when there is none).
 */
export function metricValue(text, name, labels = {}) {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = line.match(/^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)/);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

/**
 * Runs `target/release/server` (or $LETSMEET_SERVER_BIN) serving `target/site`.
 * Extra flags go in `args`; `port` restarts a server where an earlier one ran. Its
 * metrics listener is on a free loopback port too (`metricsUrl`, `metrics()`).
 * Resolves once /healthz answers (with `healthy: false`, once the port accepts: a
 * node behind a balancer answers its own address only after a PROXY header).
 */
export async function startServer({ args = [], env = {}, port: fixedPort, healthy = true } = {}) {
  const bin = process.env.LETSMEET_SERVER_BIN ?? path.join(root, 'target', 'release', 'server');
  if (!existsSync(bin)) throw new Error(`${bin} is missing: build the site first (cargo leptos build --release)`);
  const port = fixedPort ?? await freePort();
  const url = `http://127.0.0.1:${port}`;
  const metricsUrl = `http://127.0.0.1:${await freePort()}`;
  const child = spawn(bin, ['--bind', `127.0.0.1:${port}`, '--metrics-bind', metricsUrl.slice('http://'.length), ...args], {
    cwd: root,
    env: { ...process.env, LEPTOS_SITE_ROOT: path.join(root, 'target', 'site'), LETSMEET_LOG: 'warn', ...env },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  let exited = null;
  child.on('exit', (code, signal) => { exited = { code, signal }; });
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (exited) throw new Error(`server exited early: ${JSON.stringify(exited)}`);
    try {
      if (healthy) {
        const res = await fetch(`${url}/healthz`);
        if (res.ok) break;
      } else if (await accepts(port)) {
        break;
      }
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) { child.kill('SIGKILL'); throw new Error('server did not become healthy in 20 s'); }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    port,
    metricsUrl,
    pid: child.pid,
    async health() {
      return (await fetch(`${url}/healthz`)).json();
    },
    /** The Prometheus text of `GET /metrics` on the metrics listener. */
    async metrics() {
      const res = await fetch(`${metricsUrl}/metrics`);
      if (!res.ok) throw new Error(`/metrics answered ${res.status}`);
      return res.text();
    },
    async stop() {
      if (exited) return exited;
      const done = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const result = await done;
      clearTimeout(timer);
      return result;
    },
  };
}
