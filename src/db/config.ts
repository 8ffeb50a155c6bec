// The configuration rows: espf.handlers, espf.http_handlers,
// espf.subscriptions, espf.event_types, espf.dispatcher_rules and the
// espf.matrix view, for the CLI (src/config/handlers.ts), the console and
// espf run's configuration snapshot (src/config/snapshot.ts). The database
// checks every write (sql/020_config_checks.sql).
import { sql, type Queryable } from '@databases/pg';
import { EspfError } from '../errors.ts';
import { SCHEMA, type Row } from './schema.ts';

export type HandlerRow = Pick<Row<'espf.handlers'>, 'name' | 'kind' | 'enabled' | 'instance'> & { readonly kind: 'http' | 'dispatcher' };

/** A handler with its subscribed types and, for http, its settings row as JSON (an element of espf.config_document()). */
export interface InstanceHandlerRow extends HandlerRow {
  readonly types: string[];
  /** The subscribed types whose espf.event_types.coalesce is on. */
  readonly coalesce: string[];
  /** The espf.http_handlers row without `handler`; null for a dispatcher. */
  readonly http: Record<string, unknown> | null;
  /** By i_env: the settings of each environment with a row of espf.http_handler_envs, merged with `http`; null when none (absent in a document of an earlier release). */
  readonly envs?: Record<string, Record<string, unknown>> | null;
  /** Its request steps (espf.http_steps), in order; null when it has none. */
  readonly steps: StepRow[] | null;
}

/** A row of espf.http_steps (sql/035_request_steps.sql checks its structure). */
export type StepRow = Omit<Row<'espf.http_steps'>, 'updated_at'>;

/**
 * The configuration of every instance and its version, in one snapshot
 * (espf.config_in_force, sql/042_config_stream.sql): what espf run starts
 * from; each later change comes through the stream as the same document
 * (src/config/watch.ts).
 */
export async function configInForce(db: Queryable): Promise<{ version: number; handlers: InstanceHandlerRow[] }> {
  const [row] = await db.query(sql`SELECT version, handlers FROM espf.config_in_force()`);
  return { version: Number(row.version), handlers: row.handlers as InstanceHandlerRow[] };
}

/** The version of the configuration committed now (espf.config_version). */
export async function configVersion(db: Queryable): Promise<number> {
  const [row] = await db.query(sql`SELECT version FROM espf.config_version`);
  return Number(row.version);
}

/** The request steps of these handlers (espf.http_steps, sql/035_request_steps.sql), in order. */
export function stepsOfHandlers(db: Queryable, handlers: readonly string[]): Promise<StepRow[]> {
  return db.query(sql`SELECT * FROM espf.steps_of(${handlers})`);
}

/** An event of espf.events for a dry run of request steps (`espf handler check`): by i_event, or the latest of a type. */
export async function eventForCheck(db: Queryable, by: { iEvent: number } | { type: string }): Promise<{ i_event: number; event_type: string; variables: Record<string, unknown> } | undefined> {
  const [row] = await db.query('iEvent' in by
    ? sql`SELECT i_event, event_type, variables FROM espf.events WHERE i_event = ${by.iEvent}`
    : sql`SELECT i_event, event_type, variables FROM espf.events WHERE event_type = ${by.type} ORDER BY i_event DESC LIMIT 1`);
  return row ? { ...row, i_event: Number(row.i_event) } : undefined;
}

export async function handlerByName(db: Queryable, name: string): Promise<HandlerRow | undefined> {
  const [row] = await db.query(sql`SELECT name, kind, enabled, instance FROM espf.handlers WHERE name = ${name}`);
  return row;
}

/** Every handler, by name or (http handlers first) by kind and name. */
export function listHandlers(db: Queryable, order: 'name' | 'kind' = 'name'): Promise<HandlerRow[]> {
  return db.query(sql`SELECT name, kind, enabled, instance FROM espf.handlers
                       ORDER BY ${order === 'kind' ? sql`kind DESC, name` : sql`name`}`);
}

export async function handlerNames(db: Queryable): Promise<string[]> {
  return (await listHandlers(db)).map((r) => r.name);
}

/** A handler switched on or off: its name and `enabled` before the change. */
export interface Switched { readonly name: string; readonly was: boolean }

/**
 * Sets `enabled` of a handler (the row locked while it is read); what it was
 * before, or undefined for an unknown handler. The database refuses an http
 * handler without URL.
 */
export async function switchHandler(db: Queryable, name: string, enabled: boolean): Promise<Switched | undefined> {
  const [row] = await db.query(sql`
    UPDATE espf.handlers h SET enabled = ${enabled}
      FROM (SELECT name, enabled AS was FROM espf.handlers WHERE name = ${name} FOR UPDATE) o
     WHERE h.name = o.name
    RETURNING o.name, o.was`);
  return row;
}

export async function eventTypeNames(db: Queryable): Promise<string[]> {
  return (await db.query(sql`SELECT name FROM espf.event_types ORDER BY name`)).map((r) => r.name as string);
}

export async function eventTypeExists(db: Queryable, name: string): Promise<boolean> {
  return (await db.query(sql`SELECT 1 FROM espf.event_types WHERE name = ${name}`)).length > 0;
}

/**
 * Switches capture of one type (or of every type, `all`) on or off: every
 * matched type with `enabled` before, the rows locked; only those that differ
 * are updated (an update of espf.event_types compiles capture triggers,
 * sql/025_event_rules.sql). Empty for an unknown type.
 */
export function switchTypes(db: Queryable, type: string | 'all', enabled: boolean): Promise<Switched[]> {
  return db.query(sql`
    WITH o AS (SELECT name, enabled AS was FROM espf.event_types
                WHERE ${type === 'all' ? sql`true` : sql`name = ${type}`} ORDER BY name FOR UPDATE),
         u AS (UPDATE espf.event_types t SET enabled = ${enabled} FROM o WHERE t.name = o.name AND o.was <> ${enabled})
    SELECT name, was FROM o ORDER BY name`);
}

/** The types a dispatcher consumes (its rules). */
export async function dispatcherSourceTypes(db: Queryable, handler: string): Promise<string[]> {
  return (await db.query(sql`SELECT event_type FROM espf.dispatcher_rules WHERE handler = ${handler} ORDER BY event_type`))
    .map((r) => r.event_type as string);
}

export type SubscriptionRow = Pick<Row<'espf.subscriptions'>, 'handler' | 'event_type'>;

/** Subscribes a handler to types; the rows added (none for those it had). */
export async function insertSubscriptions(db: Queryable, handler: string, types: readonly string[]): Promise<SubscriptionRow[]> {
  if (types.length === 0) return [];
  return db.query(sql`
    INSERT INTO espf.subscriptions (handler, event_type) SELECT ${handler}, t FROM unnest(${types}::text[]) AS t
    ON CONFLICT DO NOTHING RETURNING handler, event_type`);
}

/** Unsubscribes a handler from types; the rows removed. */
export async function deleteSubscriptions(db: Queryable, handler: string, types: readonly string[]): Promise<SubscriptionRow[]> {
  if (types.length === 0) return [];
  return db.query(sql`
    DELETE FROM espf.subscriptions WHERE handler = ${handler} AND event_type = ANY(${types}::text[])
    RETURNING handler, event_type`);
}

export interface MatrixCell { readonly event_type: string; readonly handler: string; readonly state: '+' | '.' | ' '; readonly enabled: boolean }

/** Every (type, handler) cell of espf.matrix with the type's switch. */
export function matrixCells(db: Queryable): Promise<MatrixCell[]> {
  return db.query(sql`
    SELECT m.event_type, m.handler, m.state, t.enabled
      FROM espf.matrix m JOIN espf.event_types t ON t.name = m.event_type
     ORDER BY m.event_type, m.handler`);
}

/** An http handler's settings row with its handler's `enabled` and `instance`; undefined for no such row. */
export async function readHttpHandler(db: Queryable, handler: string): Promise<Record<string, unknown> | undefined> {
  const [row] = await db.query(sql`
    SELECT x.*, h.enabled, h.instance FROM espf.http_handlers x JOIN espf.handlers h ON h.name = x.handler
     WHERE x.handler = ${handler}`);
  return row;
}

/** The columns of espf.http_handlers one can set (`handler` is the key). */
export const HTTP_HANDLER_COLUMNS: readonly string[] = Object.keys(SCHEMA['espf.http_handlers']).filter((c) => c !== 'handler');

/** A handler's espf.http_handlers row, locked until the caller's transaction ends; undefined for no such row. */
export async function lockHttpHandler(tx: Queryable, handler: string): Promise<Record<string, unknown> | undefined> {
  const [row] = await tx.query(sql`SELECT * FROM espf.http_handlers WHERE handler = ${handler} FOR UPDATE`);
  return row;
}

/**
 * Sets columns of a handler's espf.http_handlers row: the row after;
 * undefined for no such row. A name that is not one of HTTP_HANDLER_COLUMNS
 * is refused (ESPF_USAGE) before anything runs; no columns: the row as it is.
 */
export async function setHttpHandlerColumns(db: Queryable, handler: string, values: Readonly<Record<string, unknown>>)
  : Promise<Record<string, unknown> | undefined> {
  const unknown = Object.keys(values).filter((c) => !HTTP_HANDLER_COLUMNS.includes(c));
  if (unknown.length > 0) throw new EspfError('ESPF_USAGE', `not a column of espf.http_handlers one can set: ${unknown.join(', ')}`);
  const sets = Object.entries(values).map(([k, v]) => sql`${sql.ident(k)} = ${v}`);
  const [row] = sets.length === 0
    ? await db.query(sql`SELECT * FROM espf.http_handlers WHERE handler = ${handler}`)
    : await db.query(sql`UPDATE espf.http_handlers SET ${sql.join(sets, ', ')} WHERE handler = ${handler} RETURNING *`);
  return row;
}

/** The columns of espf.http_handler_envs an environment may set (`handler` and `i_env` are the key); NULL inherits the default row. */
export const HTTP_ENV_COLUMNS: readonly string[] = Object.keys(SCHEMA['espf.http_handler_envs']).filter((c) => c !== 'handler' && c !== 'i_env');

/** The environments with a row of espf.http_handler_envs for this handler, in order. */
export async function handlerEnvs(db: Queryable, handler: string): Promise<number[]> {
  return (await db.query(sql`SELECT i_env FROM espf.http_handler_envs WHERE handler = ${handler} ORDER BY i_env`)).map((r) => r.i_env as number);
}

/**
 * An environment's row of espf.http_handler_envs (`own`: the columns as
 * stored, NULL where inherited) and the settings its events are delivered
 * with (`merged`: espf.merged_http_settings); undefined when it has no row.
 */
export async function readHttpHandlerEnv(db: Queryable, handler: string, env: number)
  : Promise<{ own: Record<string, unknown>; merged: Record<string, unknown> } | undefined> {
  const [row] = await db.query(sql`
    SELECT to_jsonb(e) AS own, to_jsonb(espf.merged_http_settings(x, e)) AS merged
      FROM espf.http_handler_envs e JOIN espf.http_handlers x ON x.handler = e.handler
     WHERE e.handler = ${handler} AND e.i_env = ${env}`);
  return row;
}

/**
 * Sets columns of an environment's row of espf.http_handler_envs, made when
 * missing (null: inherit the default row): the row after. A name that is
 * not one of HTTP_ENV_COLUMNS is refused (ESPF_USAGE) before anything runs;
 * the database checks the merged settings (sql/026_http_handler_envs.sql).
 */
export async function setHttpHandlerEnvColumns(db: Queryable, handler: string, env: number, values: Readonly<Record<string, unknown>>)
  : Promise<Record<string, unknown>> {
  const unknown = Object.keys(values).filter((c) => !HTTP_ENV_COLUMNS.includes(c));
  if (unknown.length > 0) throw new EspfError('ESPF_USAGE', `not a column of espf.http_handler_envs one can set: ${unknown.join(', ')}`);
  const cols = Object.keys(values);
  const names = [sql.ident('handler'), sql.ident('i_env'), ...cols.map((c) => sql.ident(c))];
  const vals = [sql`${handler}`, sql`${env}`, ...cols.map((c) => sql`${values[c]}`)];
  const sets = cols.length === 0 ? [sql`i_env = excluded.i_env`] : cols.map((c) => sql`${sql.ident(c)} = excluded.${sql.ident(c)}`);
  const [row] = await db.query(sql`
    INSERT INTO espf.http_handler_envs (${sql.join(names, ', ')}) VALUES (${sql.join(vals, ', ')})
    ON CONFLICT (handler, i_env) DO UPDATE SET ${sql.join(sets, ', ')} RETURNING *`);
  return row;
}

/** Drops an environment's row (its events use the default row again): whether there was one. */
export async function deleteHttpHandlerEnv(db: Queryable, handler: string, env: number): Promise<boolean> {
  return (await db.query(sql`DELETE FROM espf.http_handler_envs WHERE handler = ${handler} AND i_env = ${env} RETURNING i_env`)).length > 0;
}
