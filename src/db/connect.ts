import pgModule, { sql, type ConnectionPoolConfig, type ConnectionPool } from '@databases/pg';
import { EspfError, isConnectionError, oneLine } from '../errors.ts';
import { redactUrl } from '../security/redact.ts';
import { findPrimary, parseHosts, primaryMayHaveMoved } from './hosts.ts';

export type Db = ConnectionPool;

export interface ConnectOptions {
  readonly connectionString: string;
  readonly poolSize?: number;
  readonly applicationName?: string;
}

/**
 * Opens a pool. Bigints come back as numbers (ids stay below 2^53 in practice).
 * A URL with several hosts gives a pool on whichever of them is the primary,
 * found again after a connection error (a failover).
 */
export function connect(opts: ConnectOptions): Db {
  const parsed = parseHosts(opts.connectionString); // ESPF_USAGE on a malformed host list
  if (parsed.hosts.length > 1) return primaryPool(opts);
  return openPool({ ...opts, connectionString: parsed.urlFor(parsed.hosts[0]!) });
}

function openPool(opts: ConnectOptions & { connectTimeoutMs?: number }): Db {
  // ESM + NodeNext: the pool factory is the CommonJS module's default export.
  const createPool = (pgModule as unknown as { default: (c: ConnectionPoolConfig) => ConnectionPool }).default;
  return createPool({
    connectionString: opts.connectionString,
    bigIntMode: 'number',
    poolSize: opts.poolSize ?? 10,
    applicationName: opts.applicationName ?? 'espf',
    ssl: 'disable' === sslMode(opts.connectionString) ? false : undefined,
    ...(opts.connectTimeoutMs ? { connectionTimeoutMilliseconds: opts.connectTimeoutMs } : {}),
    onError: () => { /* idle client errors are reported by the next query */ },
  });
}

/** Whether the server at a one-host URL is in recovery (a standby). */
async function inRecovery(url: string): Promise<boolean> {
  const db = openPool({ connectionString: url, poolSize: 1, applicationName: 'espf primary search', connectTimeoutMs: 3000 });
  try {
    const [r] = await db.query(sql`SELECT pg_is_in_recovery() AS standby`);
    return r.standby === true;
  } finally {
    await db.dispose().catch(() => undefined);
  }
}

/** The one-host URL of the primary among the hosts of `url` (`url` itself when it has one host). */
export function locatePrimary(url: string): Promise<string> {
  return findPrimary(url, inRecovery);
}

/**
 * A pool that follows the primary: it is opened on the host found by
 * locatePrimary, and searched for again at the first query after an error
 * that says the primary may have moved. The failing query still fails; the
 * callers retry as they do after any lost connection.
 */
function primaryPool(opts: ConnectOptions): Db {
  let pool: Db | undefined;
  let poolUrl: string | undefined;
  let stale = true;
  let locating: Promise<Db> | undefined;
  const current = (): Promise<Db> => {
    if (pool && !stale) return Promise.resolve(pool);
    locating ??= (async () => {
      try {
        const url = await locatePrimary(opts.connectionString);
        if (!pool || url !== poolUrl) {
          const old = pool;
          pool = openPool({ ...opts, connectionString: url });
          poolUrl = url;
          void old?.dispose().catch(() => undefined);
        }
        stale = false;
        return pool;
      } finally {
        locating = undefined;
      }
    })();
    return locating;
  };
  const guard = <T>(p: Promise<T>): Promise<T> => p.catch((err: unknown) => {
    if (primaryMayHaveMoved(err)) stale = true;
    throw err;
  });
  const facade: Pick<Db, 'query' | 'tx' | 'task' | 'dispose'> = {
    query: ((q: Parameters<Db['query']>[0]) => guard(current().then((p) => p.query(q as never)))) as Db['query'],
    tx: ((fn: Parameters<Db['tx']>[0], o?: Parameters<Db['tx']>[1]) => guard(current().then((p) => p.tx(fn, o)))) as Db['tx'],
    task: ((fn: Parameters<Db['task']>[0]) => guard(current().then((p) => p.task(fn)))) as Db['task'],
    dispose: async () => {
      await locating?.catch(() => undefined);
      await pool?.dispose();
    },
  };
  return facade as Db;
}

function sslMode(url: string): string | undefined {
  try {
    return new URL(url).searchParams.get('sslmode') ?? undefined;
  } catch {
    return undefined;
  }
}

/** Fails with ESPF_NO_DATABASE (one line) when nothing answers. */
export async function ping(db: Db, url: string): Promise<void> {
  try {
    await db.query(sql`SELECT 1`);
  } catch (err) {
    if (isConnectionError(err) || (err as { code?: string }).code === undefined) {
      throw new EspfError('ESPF_NO_DATABASE', `cannot reach the database at ${redactUrl(url)}: ${oneLine(err)}`, { cause: err });
    }
    throw err;
  }
}
