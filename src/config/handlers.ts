import type { Db } from '../db/connect.ts';
import {
  deleteSubscriptions, dispatcherSourceTypes, eventTypeExists, eventTypeNames, handlerByName, handlerNames,
  insertSubscriptions, matrixCells, switchHandler, switchTypes, type HandlerRow,
} from '../db/config.ts';
import { EspfError } from '../errors.ts';
import { escapeTerminal, quoteArg } from '../security/terminal.ts';

/** What the CLI does to configuration rows. Every check that matters is the database's own. */

export type { HandlerRow };

export async function getHandler(db: Db, name: string): Promise<HandlerRow> {
  const h = await handlerByName(db, name);
  if (!h) throw new EspfError('ESPF_UNKNOWN_HANDLER', `unknown handler ${quoteArg(name)} (known: ${(await handlerNames(db)).join(', ')})`);
  return h;
}

/** Enables or disables a handler; returns whether it changed. The database refuses an http handler without URL. */
export async function setHandlerEnabled(db: Db, name: string, enabled: boolean): Promise<boolean> {
  const switched = await switchHandler(db, name, enabled);
  if (switched === undefined) await getHandler(db, name); // throws ESPF_UNKNOWN_HANDLER
  return switched?.was !== enabled;
}

/** The types a handler can subscribe to: every type for http, the consumed ones for a dispatcher. */
export function subscribableTypes(db: Db, handler: HandlerRow): Promise<string[]> {
  return handler.kind === 'http' ? eventTypeNames(db) : dispatcherSourceTypes(db, handler.name);
}

export async function assertType(db: Db, type: string): Promise<void> {
  if (!(await eventTypeExists(db, type))) throw new EspfError('ESPF_UNKNOWN_TYPE', `unknown event type ${quoteArg(type)} (see: espf matrix)`);
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
  return (subscribe ? await insertSubscriptions(db, name, types) : await deleteSubscriptions(db, name, types)).length;
}

/** Enables or disables one type or all; returns the rows changed. */
export async function setTypeEnabled(db: Db, type: string, enabled: boolean): Promise<number> {
  if (type !== 'all') await assertType(db, type);
  return (await switchTypes(db, type, enabled)).filter((t) => t.was !== enabled).length;
}

export interface Matrix { readonly handlers: string[]; readonly rows: { type: string; enabled: boolean; states: string[] }[] }

export async function readMatrix(db: Db): Promise<Matrix> {
  const cells = await matrixCells(db);
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
