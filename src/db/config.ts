// The configuration rows: espf.handlers, espf.http_handlers,
// espf.subscriptions, espf.event_types, espf.dispatcher_rules and the
// espf.matrix view. Built with Kysely (src/db/query.ts); the database checks
// every write (sql/020_config_checks.sql).
import type { Queryable } from '@databases/pg';
import { sql } from 'kysely';
import { first, q, run } from './query.ts';

export interface HandlerRow { readonly name: string; readonly kind: 'http' | 'dispatcher'; readonly enabled: boolean; readonly instance: string }

/** One row per handler of an instance with its subscribed types and, for http, its settings row as JSON. */
export function handlersOfInstance(db: Queryable, instance: string) {
  return run(db, q.selectFrom('espf.handlers as h')
    .select((eb) => [
      'h.name', 'h.kind', 'h.enabled', 'h.instance',
      eb.fn.coalesce(
        eb.selectFrom('espf.subscriptions as s').whereRef('s.handler', '=', 'h.name')
          .select(sql<string[]>`array_agg(s.event_type ORDER BY s.event_type)`.as('types')),
        sql<string[]>`'{}'::text[]`,
      ).as('types'),
      eb.fn.coalesce(
        eb.selectFrom('espf.subscriptions as s').innerJoin('espf.event_types as t', 't.name', 's.event_type')
          .whereRef('s.handler', '=', 'h.name').where('t.coalesce', '=', true)
          .select(sql<string[]>`array_agg(s.event_type)`.as('coalesce')),
        sql<string[]>`'{}'::text[]`,
      ).as('coalesce'),
      eb.selectFrom('espf.http_handlers as x').whereRef('x.handler', '=', 'h.name')
        .select(sql<Record<string, unknown>>`to_jsonb(x) - 'handler'`.as('http')).as('http'),
    ])
    .where('h.instance', '=', instance));
}

export function handlerByName(db: Queryable, name: string): Promise<HandlerRow | undefined> {
  return first(db, q.selectFrom('espf.handlers').select(['name', 'kind', 'enabled', 'instance']).where('name', '=', name));
}

export async function handlerNames(db: Queryable): Promise<string[]> {
  return (await run(db, q.selectFrom('espf.handlers').select('name').orderBy('name'))).map((r) => r.name);
}

/** Sets `enabled`; what it was before, or undefined for an unknown handler. */
export async function updateHandlerEnabled(db: Queryable, name: string, enabled: boolean): Promise<boolean | undefined> {
  const row = await first(db, q.updateTable('espf.handlers as h').set({ enabled })
    .from(q.selectFrom('espf.handlers').select(['name', 'enabled as was']).where('name', '=', name).forUpdate().as('o'))
    .whereRef('h.name', '=', 'o.name')
    .returning('o.was'));
  return row?.was;
}

export async function eventTypeNames(db: Queryable): Promise<string[]> {
  return (await run(db, q.selectFrom('espf.event_types').select('name').orderBy('name'))).map((r) => r.name);
}

export async function eventTypeExists(db: Queryable, name: string): Promise<boolean> {
  return (await first(db, q.selectFrom('espf.event_types').select('name').where('name', '=', name))) !== undefined;
}

/** The types a dispatcher consumes (its rules). */
export async function dispatcherSourceTypes(db: Queryable, handler: string): Promise<string[]> {
  return (await run(db, q.selectFrom('espf.dispatcher_rules').select('event_type').where('handler', '=', handler).orderBy('event_type')))
    .map((r) => r.event_type!);
}

/** Subscribes a handler to types; the number of rows added. */
export async function insertSubscriptions(db: Queryable, handler: string, types: readonly string[]): Promise<number> {
  if (types.length === 0) return 0;
  const rows = await run(db, q.insertInto('espf.subscriptions').values(types.map((t) => ({ handler, event_type: t })))
    .onConflict((oc) => oc.doNothing()).returning('handler'));
  return rows.length;
}

/** Unsubscribes a handler from types; the number of rows removed. */
export async function deleteSubscriptions(db: Queryable, handler: string, types: readonly string[]): Promise<number> {
  if (types.length === 0) return 0;
  const rows = await run(db, q.deleteFrom('espf.subscriptions').where('handler', '=', handler).where('event_type', 'in', types).returning('handler'));
  return rows.length;
}

/** Enables or disables one type (or every type); the number of rows changed. */
export async function updateTypeEnabled(db: Queryable, type: string | 'all', enabled: boolean): Promise<number> {
  let u = q.updateTable('espf.event_types').set({ enabled }).where('enabled', '<>', enabled);
  if (type !== 'all') u = u.where('name', '=', type);
  return (await run(db, u.returning('name'))).length;
}

/** Every (type, handler) cell of espf.matrix with the type's switch. */
export function matrixCells(db: Queryable) {
  return run(db, q.selectFrom('espf.matrix as m').innerJoin('espf.event_types as t', 't.name', 'm.event_type')
    .select(['m.event_type', 'm.handler', 'm.state', 't.enabled'])
    .orderBy('m.event_type').orderBy('m.handler'));
}
