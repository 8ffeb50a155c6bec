import type { EspfEnv } from '../config/env.ts';
import { ping, type Db } from '../db/connect.ts';
import { openPools } from './pools.ts';
import { assertMigrated } from '../db/migrated.ts';
import { EspfError } from '../errors.ts';
import { provisioningLog, serviceLogger } from '../log/logger.ts';
import { InstanceRegistry } from './instances.ts';
import { Sender } from './sender.ts';
import { startMaintenance } from '../maintenance/maintenance.ts';
import { startHttpServer } from './http-server.ts';
import { Metrics } from '../metrics/metrics.ts';
import { resolveShard, shardSlot } from './shard.ts';
import { refuseOtherDatabase, slotState } from '../db/replication.ts';

export interface RunOptions {
  readonly instance: string;
  readonly shard?: number;          // --shard K: this process serves shard K of the instance (README "Shards")
  readonly out: (s: string) => void;
  /** The environment, read and checked (src/config/env.ts). */
  readonly env: EspfEnv;
}

/**
 * `espf run`: until SIGTERM or SIGINT, then a graceful stop. A start-up that
 * fails (database, HTTP port, …) releases what it holds before it throws, so
 * the process exits at once.
 */
export async function runService(opts: RunOptions): Promise<void> {
  const { env } = opts;
  const log = serviceLogger(env);
  // What was started, stopped in reverse order (on a failed start-up too).
  const started: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const stop of started.splice(0).reverse()) await stop().catch(() => undefined);
  };
  // The stop ends by `stopBy`: ESPF_STOP_TIMEOUT after the signal (or the failed
  // start-up), even when the database does not answer (docs/operations.md, "Stopping").
  let stopBy = Infinity;
  const stopLeft = () => Math.max(0, stopBy - Date.now());
  // These steps wait a little, not for ever, and never past stopBy.
  const bounded = (stop: () => Promise<unknown>) => () =>
    Promise.race([stop().then(() => undefined), new Promise<void>((r) => setTimeout(r, Math.min(2000, stopLeft())).unref())]);
  let unrecorded = 0;
  try {
    let url = env.databaseUrl;
    if (!url) {
      const { startEmbedded } = await import('./embedded.ts');
      const { cluster, url: embedded, outside } = await startEmbedded(env.home, env.pgPort);
      url = embedded;
      if (cluster.startedHere) {
        started.push(async () => {
          await cluster.stop();
          log.info('embedded PostgreSQL stopped');
        });
      }
      opts.out([
        `espf: embedded PostgreSQL ${cluster.version} with logical replication, data in ${cluster.dir}/data`,
        ...(outside ? [`espf: (outside the repository: the user postgres, which runs PostgreSQL for root, cannot enter it; ${env.home}/location names that folder)`] : []),
        `espf: connect with: psql ${url}`,
        `espf: other espf commands in this folder use it when DATABASE_URL is not set`,
        '',
      ].join('\n'));
    }
    const pools = openPools(url, opts.instance);
    const db: Db = pools.db;
    started.push(bounded(() => pools.dispose()));
    await ping(db, url);
    await assertMigrated(db, url);
    const shard = await resolveShard(db, opts.instance, opts.shard);
    const plog = provisioningLog(env.logDir);
    started.push(() => plog.flush());
    const metrics = new Metrics({ db: pools.httpDb, shard });
    const slot = await shardSlot(db, opts.instance, shard);
    // A slot of this name made by another database of the server: refused before anything starts or is written.
    refuseOtherDatabase(slot, await slotState(db, slot));
    const sender = new Sender({ db, url, instance: opts.instance, slot, shard, log, plog, observe: metrics, window: env.window });
    metrics.bind(sender);
    const registry = new InstanceRegistry({ db, instance: opts.instance, sender, log });
    const server = await startHttpServer({ sender, db, consoleDb: pools.consoleDb, httpDb: pools.httpDb, log, metrics, registry, port: env.httpPort, host: env.httpHost, logDir: env.logDir, secureCookie: env.consoleSecureCookie, consoleScryptN: env.consoleScryptN, consoleTestEventDeny: env.consoleTestEventDeny })
      .catch((err: unknown) => {
        const e = err as { code?: string; message?: string };
        throw new EspfError('ESPF_ENV', `ESPF_HTTP_HOST=${env.httpHost} ESPF_HTTP_PORT=${env.httpPort}: cannot listen there (${e.code ?? e.message ?? String(err)})`, { cause: err });
      });
    started.push(bounded(() => server.close()));
    started.push(bounded(() => registry.stop()));   // after the sender's stop: its last beat says how far it processed
    // By stopBy, less what the steps after it need; outcomes the database did not take by then are counted.
    started.push(async () => { unrecorded = (await sender.stop(stopBy - afterSenderMs(env.stopTimeoutMs))).unrecorded; });
    await sender.start();
    registry.start();
    const maintenance = startMaintenance({ db, log, instance: opts.instance, slot: sender.slot });
    started.push(bounded(() => maintenance.stop()));

    await new Promise<void>((resolve) => {
      const onSignal = (sig: string) => {
        log.info({ signal: sig }, 'stopping: finishing requests in flight');
        process.off('SIGTERM', onSignal);
        process.off('SIGINT', onSignal);
        stopBy = Date.now() + env.stopTimeoutMs - EXIT_MARGIN_MS;
        resolve();
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
    });
  } finally {
    if (stopBy === Infinity) stopBy = Date.now() + env.stopTimeoutMs - EXIT_MARGIN_MS; // a failed start-up
    // Maintenance, then the sender, the HTTP server, the log, the pool, the embedded cluster.
    await stopAll();
    // Nothing left should keep the process alive; if something does, it must not hold the exit past stopBy.
    setTimeout(() => process.exit(process.exitCode ?? 1), Math.min(3000, stopLeft())).unref();
  }
  if (unrecorded > 0) {
    throw new EspfError('ESPF_UNRECORDED',
      `stopped with ${unrecorded} outcome(s) that could not be recorded (the database did not answer) within ESPF_STOP_TIMEOUT=${env.stopTimeoutMs / 1000} s; they were not acknowledged, so the next start will replay them`);
  }
  log.info('stopped');
}

/** Kept from the stop timeout for the process to exit once everything stopped. */
const EXIT_MARGIN_MS = 200;

/**
 * Of the stop timeout, what is kept for the steps after the sender's stop (the
 * last heartbeat, the HTTP server, the log, the pool): a fifth, at most 2 s.
 */
export function afterSenderMs(stopTimeoutMs: number): number {
  return Math.min(2000, stopTimeoutMs / 5);
}
