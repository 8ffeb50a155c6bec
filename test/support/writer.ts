import assert from 'node:assert/strict';
import { sql } from '@databases/pg';
import type { Db } from '../../src/db/connect.ts';
import type { Received } from './receiver.ts';

type Ids = { i_product: number; i_customer: number };

/**
 * Billing writes until stopped, in small transactions one after the other:
 * each creates accounts (Account/New) and renames accounts created earlier
 * (Account/ID/Changed), so an account has several events in commit order.
 * A failed transaction (no primary during a failover) is retried after a pause.
 */
export class AccountWriter {
  committed = 0;
  failures = 0;
  /** Events committed by burst(). */
  burstEvents = 0;
  private readonly accounts: number[] = [];
  private stopped = false;
  private loop?: Promise<void>;
  private n = 0;

  constructor(private readonly db: Db, private readonly ids: Ids, private readonly prefix: string) {}

  start(): void {
    this.loop = (async () => {
      while (!this.stopped) {
        try {
          await this.write(`${this.n++}`, 3, 3);
        } catch {
          this.failures++;
          await new Promise((r) => setTimeout(r, 100));
        }
        await new Promise((r) => setTimeout(r, 15));
      }
    })();
  }

  /** One larger transaction at once (20 new accounts, 10 renamed), counted in burstEvents. */
  async burst(tag: string): Promise<void> {
    this.burstEvents += await this.write(tag, 20, 10);
  }

  /** Creates `create` accounts and renames `rename` of those created earlier; the events it committed. */
  private async write(tag: string, create: number, rename: number): Promise<number> {
    const renamed = this.accounts.slice(-2 * rename, -rename);
    const created = await this.db.tx(async (tx) => {
      const rows: { i_account: number }[] = await tx.query(sql`
        INSERT INTO billing.account (id, i_customer, i_product)
        SELECT ${`${this.prefix}-${tag}-`} || g, ${this.ids.i_customer}, ${this.ids.i_product}
          FROM generate_series(1, ${create}) g RETURNING i_account`);
      if (renamed.length) await tx.query(sql`UPDATE billing.account SET id = id || 'r' WHERE i_account = ANY(${renamed}::bigint[])`);
      return rows.map((r) => Number(r.i_account));
    });
    this.accounts.push(...created);
    this.committed += created.length + renamed.length;
    return created.length + renamed.length;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

/**
 * Per-account order at the receiver: the first copy of each event of an
 * account arrives in commit order (i_event order for one writer), and no copy
 * of an event arrives after the first copy of a later event of its account
 * (a caught-up event neither overtakes nor is overtaken by a later one).
 * Duplicates of one event in a row are allowed.
 */
export function assertAccountOrder(received: readonly Received[]): void {
  const latest = new Map<number, number>();
  for (const r of received) {
    const account = Number(r.json.variables.i_account);
    const i = Number(r.json.variables.i_event);
    const last = latest.get(account) ?? -Infinity;
    assert.ok(i >= last, `account ${account}: event ${i} arrived after event ${last}, a later event of the account`);
    latest.set(account, i);
  }
}
