/** Binding the sandbox's HTTPS endpoints to loopback. */
import type { Server } from 'node:net';

/** Listens on 127.0.0.1 (`port` 0 = any free port) and resolves with the bound port. */
export function listenOnLoopback(server: Server, port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve((server.address() as { port: number }).port);
    });
  });
}
