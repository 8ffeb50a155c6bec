import { connect, type Db } from '../db/connect.ts';

/** Connections of the sender: the record path, waiting pages, configuration, maintenance. */
export const SENDER_POOL_SIZE = 6;
/** Connections of the web console: every /console/ request, logged in or not, and its resend jobs. */
export const CONSOLE_POOL_SIZE = 2;
/** Connections of the status API (/espf/v1/) and of /metrics (the slot lag it reads). */
export const HTTP_POOL_SIZE = 2;

export interface Pools {
  /** The sender's pool (application_name `espf run <instance>`). */
  readonly db: Db;
  /** The console's own pool (application_name `espf run <instance> console`): a flood of console requests waits here, never on `db`. */
  readonly consoleDb: Db;
  /** The pool of the status API and /metrics (application_name `espf run <instance> http`): receivers' reports and scrapes wait here, never on `db`. */
  readonly httpDb: Db;
  dispose(): Promise<void>;
}

/**
 * The three pools of `espf run` (docs/console.md, "Load"): the console's requests,
 * and those of the status API and /metrics, never take a connection of the
 * sender, so a flood of them, or a read held up by a lock, cannot slow provisioning.
 */
export function openPools(url: string, instance: string): Pools {
  const db = connect({ connectionString: url, poolSize: SENDER_POOL_SIZE, applicationName: `espf run ${instance}` });
  const consoleDb = connect({ connectionString: url, poolSize: CONSOLE_POOL_SIZE, applicationName: `espf run ${instance} console` });
  const httpDb = connect({ connectionString: url, poolSize: HTTP_POOL_SIZE, applicationName: `espf run ${instance} http` });
  return {
    db, consoleDb, httpDb,
    dispose: async () => {
      await Promise.all([db.dispose(), consoleDb.dispose(), httpDb.dispose()]);
    },
  };
}
