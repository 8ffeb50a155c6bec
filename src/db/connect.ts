import pgModule, { sql, type ConnectionPoolConfig, type ConnectionPool } from '@databases/pg';
import { EspfError, isConnectionError, oneLine } from '../errors.ts';
import { redactUrl } from '../security/redact.ts';

export type Db = ConnectionPool;

export interface ConnectOptions {
  readonly connectionString: string;
  readonly poolSize?: number;
  readonly applicationName?: string;
}

/** Opens a pool. Bigints come back as numbers (ids stay below 2^53 in practice). */
export function connect(opts: ConnectOptions): Db {
  // ESM + NodeNext: the pool factory is the CommonJS module's default export.
  const createPool = (pgModule as unknown as { default: (c: ConnectionPoolConfig) => ConnectionPool }).default;
  return createPool({
    connectionString: opts.connectionString,
    bigIntMode: 'number',
    poolSize: opts.poolSize ?? 10,
    applicationName: opts.applicationName ?? 'espf',
    ssl: 'disable' === sslMode(opts.connectionString) ? false : undefined,
    onError: () => { /* idle client errors are reported by the next query */ },
  });
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
