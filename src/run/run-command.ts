import { sql } from '@databases/pg';
import { connect, ping, redactUrl } from '../db/connect.ts';
import { EspfError, SQLSTATE, sqlState } from '../errors.ts';
import { provisioningLog, serviceLogger } from '../log/logger.ts';
import { Sender } from './sender.ts';
import { startMaintenance } from '../maintenance/maintenance.ts';
import { startHttpServer } from './http-server.ts';
import { Metrics } from '../metrics/metrics.ts';

export interface RunOptions {
  readonly instance: string;
  readonly out: (s: string) => void;
}

/** `espf run`: until SIGTERM or SIGINT, then a graceful stop. */
export async function runService(opts: RunOptions): Promise<void> {
  const log = serviceLogger();
  let url = process.env.DATABASE_URL;
  let embeddedCluster: { stop(): Promise<void>; startedHere: boolean } | undefined;
  if (!url) {
    const { startEmbedded } = await import('./embedded.ts');
    const { cluster, url: embedded } = await startEmbedded();
    url = embedded;
    embeddedCluster = cluster;
    opts.out([
      `espf: embedded PostgreSQL ${cluster.version} with logical replication, data in ${cluster.dir}/data`,
      `espf: connect with: psql ${url}`,
      `espf: other espf commands in this folder use it when DATABASE_URL is not set`,
      '',
    ].join('\n'));
  }
  const db = connect({ connectionString: url, poolSize: 6, applicationName: `espf run ${opts.instance}` });
  await ping(db, url);
  try {
    await db.query(sql`SELECT 1 FROM espf.migrations LIMIT 1`);
  } catch (err) {
    if (sqlState(err) === SQLSTATE.undefinedTable) {
      throw new EspfError('ESPF_NOT_MIGRATED', `the database at ${redactUrl(url)} has no espf schema: run espf migrate first`);
    }
    throw err;
  }
  const plog = provisioningLog();
  const metrics = new Metrics({ db });
  const sender = new Sender({ db, url, instance: opts.instance, log, plog, observe: metrics });
  metrics.bind(sender);
  const server = await startHttpServer({ sender, db, log, metrics, port: Number(process.env.ESPF_HTTP_PORT ?? 9187) });
  await sender.start();
  const maintenance = startMaintenance({ db, log, instance: opts.instance, slot: sender.slot });

  await new Promise<void>((resolve) => {
    const onSignal = (sig: string) => {
      log.info({ signal: sig }, 'stopping: finishing requests in flight');
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      resolve();
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  await maintenance.stop();
  await sender.stop();
  await server.close();
  await plog.flush();
  await db.dispose();
  if (embeddedCluster?.startedHere) {
    await embeddedCluster.stop();
    log.info('embedded PostgreSQL stopped');
  }
  log.info('stopped');
}
