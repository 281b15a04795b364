// A TCP forwarder on loopback whose connections reach the server from another
// loopback address: every browser runs on 127.0.0.1, and the server tells clients
// apart (and bans them) by address, so a test gives each browser its own.
import net from 'node:net';

/**
 * Listens on 127.0.0.1 (a free port) and forwards each connection to
 * 127.0.0.1:`targetPort`, connecting from `sourceIp` (any of 127.0.0.0/8). When the
 * server closes or resets its side, the browser's side is closed the same way.
 */
export async function forwardFrom(sourceIp, targetPort) {
  const sockets = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect({ host: '127.0.0.1', port: targetPort, localAddress: sourceIp });
    for (const s of [client, upstream]) {
      // Never what keeps the test process alive.
      s.unref();
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    client.pipe(upstream);
    upstream.pipe(client);
    upstream.on('error', () => client.resetAndDestroy());
    client.on('error', () => upstream.destroy());
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  server.unref();
  return {
    port: server.address().port,
    url: `http://127.0.0.1:${server.address().port}/`,
    close() {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}
