/** Our own error codes; database errors keep their SQLSTATE in `code`. */
export type EspfErrorCode =
  | 'ESPF_USAGE'                // bad command-line input
  | 'ESPF_NO_DATABASE'          // the database cannot be reached
  | 'ESPF_NO_PRIMARY'           // DATABASE_URL lists several hosts and none is a primary (yet)
  | 'ESPF_MIGRATION_EDITED'     // a shipped migration was edited after it was applied
  | 'ESPF_MIGRATION_FAILED'     // a migration or repeatable SQL file failed
  | 'ESPF_UNKNOWN_HANDLER'
  | 'ESPF_UNKNOWN_TYPE'
  | 'ESPF_UNKNOWN_RULE'
  | 'ESPF_RULES_BROKEN'         // espf rule check: a rule no longer compiles
  | 'ESPF_STEPS_BROKEN'         // espf handler check: an expression of a request step does not compile
  | 'ESPF_UNKNOWN_EVENT'        // espf handler check --event: no such event in espf.events
  | 'ESPF_BACKFILL_REFUSED'     // espf backfill: a disabled type, nothing to resume, …
  | 'ESPF_INTERRUPTED'          // stopped by a signal; resumable
  | 'ESPF_CLUSTER'              // the embedded/throwaway PostgreSQL could not start
  | 'ESPF_NOT_MIGRATED'         // the espf schema is missing
  | 'ESPF_ENV'                  // an environment variable has a value espf cannot use
  | 'ESPF_UNRECORDED'           // espf run stopped with outcomes the database did not take
  | 'ESPF_SHARDS_CHANGED'       // the slot is missing and the instance's number of shards is no longer this process's
  | 'ESPF_SLOT_ELSEWHERE'       // the instance's slot name is taken by a slot of another database of the server
  | 'ESPF_STREAM_PROTOCOL'      // the replication stream sent what pgoutput does not (a BEGIN without its commit position)
  | 'ESPF_STREAM_ORDER'         // the stream brought a transaction before the one being handed out was finished
  | 'ESPF_RECONNECT';           // the replication connection is dropped on purpose: a statement met a lost database

export class EspfError extends Error {
  readonly code: EspfErrorCode;
  constructor(code: EspfErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'EspfError';
  }
}

/** SQLSTATE classes we branch on. */
export const SQLSTATE = {
  checkViolation: '23514',
  foreignKeyViolation: '23503',
  uniqueViolation: '23505',
  undefinedTable: '42P01',
  undefinedFunction: '42883',
  invalidCatalogName: '3D000',
  duplicateObject: '42710',
  objectInUse: '55006',
  adminShutdown: '57P01',
  cannotConnectNow: '57P03',
} as const;

export function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** True for errors that mean "no database answered" (refused, unknown host, socket gone, shutting down). */
export function isConnectionError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return false;
  return ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNRESET', 'ETIMEDOUT', 'ENOENT', 'EHOSTUNREACH', 'EPIPE',
    SQLSTATE.adminShutdown, SQLSTATE.cannotConnectNow, '57P02', '08006', '08001', '08003', '08004', SQLSTATE.invalidCatalogName,
    'ESPF_NO_PRIMARY'].includes(code);
}

/**
 * One line for a person: the first line of the message, without stack or
 * secrets. The one formatter of errors for messages and log fields.
 */
export function oneLine(err: unknown): string {
  const m = (err as { message?: unknown } | null)?.message;
  const message = typeof m === 'string' ? m : String(err);
  const first = (message.split('\n')[0] ?? '').trim();
  return first || (err instanceof Error ? err.name : 'error');
}
