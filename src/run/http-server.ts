import http from 'node:http';
import type { Db } from '../db/connect.ts';
import type { Logger } from '../log/logger.ts';
import type { Sender } from './sender.ts';

export interface HttpServerOptions {
  readonly sender: Sender;
  readonly db: Db;
  readonly log: Logger;
  readonly port: number;
}

/** The HTTP side of espf run on ESPF_HTTP_PORT: /healthz (ready when streaming). */
export async function startHttpServer(opts: HttpServerOptions): Promise<{ close(): Promise<void>; port: number }> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/healthz') {
      const ready = opts.sender.isStreaming;
      res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ alive: true, ready, slot: opts.sender.slot }));
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: 'not found' }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  opts.log.info({ port }, `http: /healthz on 127.0.0.1:${port}`);
  return {
    port,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
