// The two tables of the example HSS, in memory: `auc` (the SIM's keys) and
// `subscriber` (the IMSI's line: MSISDN, enabled). No HTTP here: each
// operation returns the row, null for "no such row" (the API answers 200 null,
// as PyHSS does), or throws Refused (the API answers 400 {"result":"Failed"}).

export interface AucRow {
  auc_id: number;
  ki: string;
  opc: string;
  amf: string;
  imsi: string;
  sqn: number;
}

export interface SubscriberRow {
  subscriber_id: number;
  imsi: string;
  msisdn: string;
  auc_id: number;
  enabled: boolean;
}

/** A request the tables refuse (a duplicate IMSI, an unknown auc_id, a bad field): 400 {"result":"Failed","reason":…}. */
export class Refused extends Error {}

type Json = Record<string, unknown>;

function text(body: Json, field: string, pattern: RegExp, what: string): string {
  const v = body[field];
  if (typeof v !== 'string' || !pattern.test(v)) throw new Refused(`${field} must be ${what}`);
  return v;
}

function flag(body: Json, field: string): boolean | undefined {
  const v = body[field];
  if (v !== undefined && typeof v !== 'boolean') throw new Refused(`${field} must be true or false`);
  return v;
}

const HEX32 = /^[0-9A-Fa-f]{32}$/;
const IMSI = /^[0-9]{5,15}$/;
const MSISDN = /^[0-9]{3,15}$/;

function onlyFields(body: Json, allowed: readonly string[]): void {
  const extra = Object.keys(body).filter((k) => !allowed.includes(k));
  if (extra.length > 0) throw new Refused(`unknown field(s): ${extra.join(', ')} (accepted: ${allowed.join(', ')})`);
}

/** One table: rows by a server-assigned id (from 1), each with a unique imsi. Rows go out as copies. */
class Table<T extends { imsi: string }> {
  readonly rows = new Map<number, T>();
  private nextId = 1;

  constructor(private readonly name: string) {}

  /** A new row made by `make(id)`; refused when its imsi is taken. */
  insert(imsi: string, make: (id: number) => T): T {
    if (this.byImsi(imsi)) throw new Refused(`${this.name} with imsi ${imsi} exists`);
    const id = this.nextId++;
    const row = make(id);
    this.rows.set(id, row);
    return { ...row };
  }

  byId(id: number): T | null {
    const row = this.rows.get(id);
    return row ? { ...row } : null;
  }

  byImsi(imsi: string): T | null {
    for (const row of this.rows.values()) if (row.imsi === imsi) return { ...row };
    return null;
  }

  all(): T[] {
    return [...this.rows.values()].map((r) => ({ ...r }));
  }
}

export class HssTables {
  readonly auc = new Table<AucRow>('an auc');
  readonly subscriber = new Table<SubscriberRow>('a subscriber');

  /** PUT /auc/: a new row with a server-assigned auc_id; a duplicate imsi is refused. */
  createAuc(body: Json): AucRow {
    onlyFields(body, ['ki', 'opc', 'amf', 'imsi', 'sqn']);
    const fields = {
      ki: text(body, 'ki', HEX32, '32 hex digits').toUpperCase(),
      opc: text(body, 'opc', HEX32, '32 hex digits').toUpperCase(),
      amf: text(body, 'amf', /^[0-9A-Fa-f]{4}$/, '4 hex digits').toUpperCase(),
      imsi: text(body, 'imsi', IMSI, '5 to 15 digits'),
      sqn: body.sqn === undefined ? 1 : Number(body.sqn),
    };
    if (!Number.isSafeInteger(fields.sqn) || fields.sqn < 0) throw new Refused('sqn must be a non-negative integer');
    return this.auc.insert(fields.imsi, (auc_id) => ({ auc_id, ...fields }));
  }

  /** DELETE /auc/{id}: true when deleted, false when there is no such row; refused while a subscriber uses it. */
  deleteAuc(id: number): boolean {
    if (!this.auc.rows.has(id)) return false;
    const user = this.subscriber.all().find((s) => s.auc_id === id);
    if (user) throw new Refused(`auc ${id} is used by subscriber ${user.subscriber_id}`);
    return this.auc.rows.delete(id);
  }

  /** PUT /subscriber/: a new row with a server-assigned subscriber_id; a duplicate imsi or an unknown auc_id is refused. */
  createSubscriber(body: Json): SubscriberRow {
    onlyFields(body, ['imsi', 'msisdn', 'auc_id', 'enabled']);
    const fields = {
      imsi: text(body, 'imsi', IMSI, '5 to 15 digits'),
      msisdn: text(body, 'msisdn', MSISDN, '3 to 15 digits'),
      auc_id: body.auc_id,
      enabled: flag(body, 'enabled') ?? true,
    };
    const aucId = fields.auc_id;
    if (typeof aucId !== 'number' || !this.auc.rows.has(aucId)) throw new Refused(`auc_id ${JSON.stringify(aucId) ?? 'missing'} is not a row of auc`);
    return this.subscriber.insert(fields.imsi, (subscriber_id) => ({ subscriber_id, ...fields, auc_id: aucId }));
  }

  /** PATCH /subscriber/{id}: changes enabled and/or msisdn; null when there is no such row (nothing changes). */
  updateSubscriber(id: number, body: Json): SubscriberRow | null {
    onlyFields(body, ['enabled', 'msisdn']);
    const row = this.subscriber.rows.get(id);
    if (!row) return null;
    const enabled = flag(body, 'enabled') ?? row.enabled;
    const msisdn = body.msisdn === undefined ? row.msisdn : text(body, 'msisdn', MSISDN, '3 to 15 digits');
    Object.assign(row, { enabled, msisdn });
    return { ...row };
  }

  /** Copies of both tables, in id order. */
  state(): { auc: AucRow[]; subscriber: SubscriberRow[] } {
    return { auc: this.auc.all(), subscriber: this.subscriber.all() };
  }
}
