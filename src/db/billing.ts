// The reference billing model (schema billing, migrations/0001_billing.sql) as
// the console reads it: accounts with their customer and product names.
import { sql, type Queryable } from '@databases/pg';

export interface AccountMatch {
  readonly i_account: number; readonly id: string; readonly i_customer: number; readonly customer: string | null; readonly blocked: boolean;
}

/** Accounts whose id is `q`, or (when `q` is a number) whose i_account or i_customer is; at most 100. */
export function findAccounts(db: Queryable, q: string): Promise<AccountMatch[]> {
  const n = /^\d{1,15}$/.test(q) ? Number(q) : null;
  return db.query(sql`
    SELECT a.i_account, a.id, a.i_customer, c.name AS customer, a.blocked
      FROM billing.account a LEFT JOIN billing.customer c ON c.i_customer = a.i_customer
     WHERE a.id = ${q} OR a.i_account = ${n} OR a.i_customer = ${n}
     ORDER BY a.i_account LIMIT 100`);
}

export interface AccountNames extends AccountMatch { readonly i_product: number; readonly product: string | null }

/** One account with its customer's and product's names; null for no such account. */
export async function accountWithNames(db: Queryable, iAccount: number): Promise<AccountNames | null> {
  const [row] = await db.query(sql`
    SELECT a.i_account, a.id, a.i_customer, c.name AS customer, a.i_product, p.name AS product, a.blocked
      FROM billing.account a
      LEFT JOIN billing.customer c ON c.i_customer = a.i_customer
      LEFT JOIN billing.product p ON p.i_product = a.i_product
     WHERE a.i_account = ${iAccount}`);
  return row ?? null;
}
