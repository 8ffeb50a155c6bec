import http from 'node:http';
import type { Db } from '../db/connect.ts';
import { oneLine } from '../errors.ts';
import type { Logger } from '../log/logger.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { InstanceRegistry } from './instances.ts';
import type { Sender } from './sender.ts';
import { handleStatusApi } from './status-api.ts';
import type { createConsole } from '../console/server.ts';

/** Connections the kernel keeps waiting for this server to accept them (capped by net.core.somaxconn). */
export const LISTEN_BACKLOG = 2048;

export interface HttpServerOptions {
  readonly sender: Sender;
  readonly db: Db;
  /** The console's own pool (src/run/pools.ts); without it the console shares `db`. */
  readonly consoleDb?: Db;
  /** The pool of the status API (src/run/pools.ts); without it the status API shares `db`. */
  readonly httpDb?: Db;
  readonly log: Logger;
  readonly port: number;
  /** Address to listen on (default 127.0.0.1; espf run passes ESPF_HTTP_HOST). */
  readonly host?: string;
  /** The console's provisioning.log folder and cookie setting (ESPF_LOG_DIR, ESPF_CONSOLE_SECURE_COOKIE). */
  readonly logDir?: string;
  readonly secureCookie?: boolean;
  /** The scrypt cost of the console's check for an unknown user (ESPF_CONSOLE_SCRYPT_N). */
  readonly consoleScryptN?: number;
  /** ESPF_CONSOLE_TEST_EVENT_DENY (src/security/address-policy.ts). */
  readonly consoleTestEventDeny?: readonly string[];
  /** How long the console keeps its settings (src/console/settings.ts). */
  readonly consoleSettingsTtlMs?: number;
  /** Served at /metrics when set. */
  readonly metrics?: Metrics;
  /** /healthz lists the handlers of other instances that wait on one that is not streaming. */
  readonly registry?: InstanceRegistry;
}

/**
 * The HTTP side of espf run on ESPF_HTTP_PORT: /healthz (ready when streaming),
 * /metrics (Prometheus text format), the status API under /espf/v1/ and the
 * web console under /console/ (docs/console.md).
 */
export async function startHttpServer(opts: HttpServerOptions): Promise<{ close(): Promise<void>; port: number }> {
  // The console's modules are loaded on its first request, not at start (resident memory:
  // docs/benchmarks.md, "espf run per event and memory (2026-12-07)").
  let web: Promise<ReturnType<typeof createConsole>> | undefined;
  const consoleRequest = (req: http.IncomingMessage, res: http.ServerResponse, path: string): boolean => {
    if (path !== '/console' && !path.startsWith('/console/')) return false;
    web ??= import('../console/server.ts').then((m) => m.createConsole({ db: opts.consoleDb ?? opts.db, log: opts.log, logDir: opts.logDir, secureCookie: opts.secureCookie, settingsTtlMs: opts.consoleSettingsTtlMs, scryptN: opts.consoleScryptN, testEventDeny: opts.consoleTestEventDeny }));
    web.then((w) => w.handle(req, res, path), (err: unknown) => {
      web = undefined;
      opts.log.error({ err: oneLine(err), path }, 'console: request failed');
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('console failed to load: see the espf run log\n');
    });
    return true;
  };
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    if (path === '/healthz' && (req.method === 'GET' || req.method === 'HEAD')) {
      const ready = opts.sender.isStreaming;
      res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      const waiting = (opts.registry?.waitingHandlers ?? []).map((w) => ({
        handler: w.handler, instance: w.instance, instance_state: w.instance_state, waiting_events: w.waiting_events,
      }));
      // A handler whose request steps do not compile sends nothing (its deliveries wait); the others go on.
      const brokenSteps = [...opts.sender.httpHandlers.values()].flatMap((h) => h.stepProblems.map((p) => ({
        handler: p.handler, event_type: p.eventType, step: p.step, field: p.field, problem: p.message,
      })));
      res.end(JSON.stringify({ alive: true, ready, slot: opts.sender.slot, waiting_on_instances: waiting, ...(brokenSteps.length ? { broken_steps: brokenSteps } : {}) }));
      return;
    }
    if (path === '/metrics' && opts.metrics && (req.method === 'GET' || req.method === 'HEAD')) {
      const metrics = opts.metrics;
      metrics.text().then(
        (text) => {
          res.writeHead(200, { 'content-type': metrics.contentType, 'cache-control': 'no-store' });
          res.end(text);
        },
        (err: unknown) => {
          opts.log.error({ err: oneLine(err) }, 'http: /metrics failed');
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end('metrics failed: see the espf run log\n');
        },
      );
      return;
    }
    if (handleStatusApi(req, res, path, { db: opts.httpDb ?? opts.db, log: opts.log })) return;
    if (consoleRequest(req, res, path)) return;
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: 'not found' }));
  });
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // A burst of connections (a flood of console requests) waits in the kernel's queue rather than being reset: 2,048, not Node's 511.
    server.listen({ port: opts.port, host, backlog: LISTEN_BACKLOG }, () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  opts.log.info({ host, port }, `http: /healthz, /metrics, the status API and /console/ on ${host}:${port}`);
  return {
    port,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
