import { sql } from '@databases/pg';
import type { Db } from '../db/connect.ts';
import { EspfError } from '../errors.ts';
import { escapeTerminal, quoteArg } from '../security/terminal.ts';

/** What the CLI does to configuration rows. Every check that matters is the database's own. */

export interface HandlerRow { readonly name: string; readonly kind: 'http' | 'dispatcher'; readonly enabled: boolean; readonly instance: string }

export async function getHandler(db: Db, name: string): Promise<HandlerRow> {
  const [h] = await db.query(sql`SELECT name, kind, enabled, instance FROM espf.handlers WHERE name = ${name}`);
  if (!h) {
    const all: { name: string }[] = await db.query(sql`SELECT name FROM espf.handlers ORDER BY name`);
    throw new EspfError('ESPF_UNKNOWN_HANDLER', `unknown handler ${quoteArg(name)} (known: ${all.map((r) => r.name).join(', ')})`);
  }
  return h as HandlerRow;
}

/** Enables or disables a handler; returns whether it changed. The database refuses an http handler without URL. */
export async function setHandlerEnabled(db: Db, name: string, enabled: boolean): Promise<boolean> {
  const rows: { was: boolean }[] = await db.query(sql`
    UPDATE espf.handlers h SET enabled = ${enabled}
      FROM (SELECT name, enabled AS was FROM espf.handlers WHERE name = ${name} FOR UPDATE) o
     WHERE h.name = o.name
    RETURNING o.was`);
  const [row] = rows;
  if (!row) await getHandler(db, name); // throws ESPF_UNKNOWN_HANDLER
  return row!.was !== enabled;
}

/** The types a handler can subscribe to: every type for http, the consumed ones for a dispatcher. */
export async function subscribableTypes(db: Db, handler: HandlerRow): Promise<string[]> {
  const rows: { name: string }[] = handler.kind === 'http'
    ? await db.query(sql`SELECT name FROM espf.event_types ORDER BY name`)
    : await db.query(sql`SELECT event_type AS name FROM espf.dispatcher_rules WHERE handler = ${handler.name} ORDER BY event_type`);
  return rows.map((r) => r.name);
}

export async function assertType(db: Db, type: string): Promise<void> {
  const [t] = await db.query(sql`SELECT 1 FROM espf.event_types WHERE name = ${type}`);
  if (!t) throw new EspfError('ESPF_UNKNOWN_TYPE', `unknown event type ${quoteArg(type)} (see: espf matrix)`);
}

/** Subscribes (or unsubscribes) a handler to one type or to `all` it can take; returns the rows changed. */
export async function setSubscription(db: Db, name: string, type: string, subscribe: boolean): Promise<number> {
  const h = await getHandler(db, name);
  let types: string[];
  if (type === 'all') {
    types = await subscribableTypes(db, h);
  } else {
    await assertType(db, type);
    types = [type];
  }
  return db.tx(async (tx) => {
    const rows = subscribe
      ? await tx.query(sql`INSERT INTO espf.subscriptions (handler, event_type)
                           SELECT ${name}, t FROM unnest(${types}::text[]) AS t
                           ON CONFLICT DO NOTHING RETURNING 1`)
      : await tx.query(sql`DELETE FROM espf.subscriptions WHERE handler = ${name} AND event_type = ANY(${types}::text[]) RETURNING 1`);
    return rows.length;
  });
}

/** Enables or disables one type or all; returns the rows changed. */
export async function setTypeEnabled(db: Db, type: string, enabled: boolean): Promise<number> {
  if (type !== 'all') await assertType(db, type);
  const rows = type === 'all'
    ? await db.query(sql`UPDATE espf.event_types SET enabled = ${enabled} WHERE enabled <> ${enabled} RETURNING 1`)
    : await db.query(sql`UPDATE espf.event_types SET enabled = ${enabled} WHERE name = ${type} AND enabled <> ${enabled} RETURNING 1`);
  return rows.length;
}

export interface Matrix { readonly handlers: string[]; readonly rows: { type: string; enabled: boolean; states: string[] }[] }

export async function readMatrix(db: Db): Promise<Matrix> {
  const cells: { event_type: string; handler: string; state: string; enabled: boolean }[] = await db.query(sql`
    SELECT m.event_type, m.handler, m.state, t.enabled
      FROM espf.matrix m JOIN espf.event_types t ON t.name = m.event_type
     ORDER BY m.event_type, m.handler`);
  const handlers = [...new Set(cells.map((c) => c.handler))].sort();
  const byType = new Map<string, { type: string; enabled: boolean; states: string[] }>();
  for (const c of cells) {
    let row = byType.get(c.event_type);
    if (!row) byType.set(c.event_type, row = { type: c.event_type, enabled: c.enabled, states: handlers.map(() => ' ') });
    row.states[handlers.indexOf(c.handler)] = c.state;
  }
  return { handlers, rows: [...byType.values()] };
}

/** The matrix as text for a terminal (names escaped: they are rows anyone with write access to espf may add). */
export function formatMatrix(matrix: Matrix): string {
  const m: Matrix = {
    handlers: matrix.handlers.map(escapeTerminal),
    rows: matrix.rows.map((r) => ({ ...r, type: escapeTerminal(r.type) })),
  };
  const typeWidth = Math.max(10, ...m.rows.map((r) => r.type.length)) + 2;
  const header = 'event type'.padEnd(typeWidth) + 'on  ' + m.handlers.map((h, i) => `${i + 1}`.padStart(2).padEnd(4)).join('');
  const lines = m.rows.map((r) => r.type.padEnd(typeWidth) + (r.enabled ? 'yes ' : 'no  ') + r.states.map((s) => ` ${s}  `).join(''));
  const legend = m.handlers.map((h, i) => `  ${i + 1}: ${h}`);
  return [header, ...lines, '', 'handlers:', ...legend, '', "'+' subscribed  '.' can subscribe  ' ' cannot"].join('\n');
}
