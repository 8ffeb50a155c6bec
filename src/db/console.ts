// The web console's own tables: espf.console (its switch and session
// settings), espf.console_users, espf.console_sessions, espf.console_audit,
// and the views it reads (espf.console_overview, espf.console_slots,
// espf.console_series of sql/800_console.sql). The console (src/console/) and
// `espf console` (src/cli/console-command.ts) both call these. Sessions are
// kept by the sha256 of their id (src/console/auth.ts, sessionKey): the id
// itself never reaches the database.
import { sql, type Queryable } from '@databases/pg';
import type { Row } from './schema.ts';

export type ConsoleRole = 'viewer' | 'admin';

export interface ConsoleSettings {
  readonly enabled: boolean;
  readonly users: number;
  readonly session_secret: string;
  readonly session_ttl_s: number;
  readonly login_attempts: number;
  readonly login_window_s: number;
  /** Addresses or networks (CIDR) of proxies whose X-Forwarded-For is believed. */
  readonly trusted_proxies: readonly string[];
  readonly resend_max_rows: number;
}

/** The espf.console row with the number of users; null before espf migrate made it. */
export async function consoleSettings(db: Queryable): Promise<ConsoleSettings | null> {
  const [row] = await db.query(sql`
    SELECT enabled, session_secret,
           extract(epoch FROM session_ttl)::float8 AS session_ttl_s, login_attempts,
           extract(epoch FROM login_window)::float8 AS login_window_s,
           trusted_proxies::text[] AS trusted_proxies, resend_max_rows,
           (SELECT count(*)::int FROM espf.console_users) AS users
      FROM espf.console`);
  return (row as ConsoleSettings | undefined) ?? null;
}

/** Switches the console on or off (espf.console.enabled). */
export async function setConsoleEnabled(db: Queryable, enabled: boolean): Promise<void> {
  await db.query(sql`UPDATE espf.console SET enabled = ${enabled}, updated_at = now()`);
}

// ── users ────────────────────────────────────────────────────────────────────

export type ConsoleUser = { readonly name: string; readonly role: ConsoleRole; readonly password_hash: string };

export async function consoleUser(db: Queryable, name: string): Promise<ConsoleUser | null> {
  const [row] = await db.query(sql`SELECT name, role, password_hash FROM espf.console_users WHERE name = ${name}`);
  return row ?? null;
}

export function consoleUsers(db: Queryable): Promise<(Pick<Row<'espf.console_users'>, 'name' | 'created_at'> & { role: ConsoleRole })[]> {
  return db.query(sql`SELECT name, role, created_at FROM espf.console_users ORDER BY name`);
}

/** Adds a user (fails with 23505, unique_violation, when the name is taken). */
export async function addConsoleUser(db: Queryable, name: string, role: ConsoleRole, passwordHash: string): Promise<void> {
  await db.query(sql`INSERT INTO espf.console_users (name, role, password_hash) VALUES (${name}, ${role}, ${passwordHash})`);
}

/** A new password (and the role, unless null) in one transaction that ends the user's sessions; false for no such user. */
export function setConsoleUserPassword(db: Queryable, name: string, passwordHash: string, role: ConsoleRole | null): Promise<boolean> {
  return db.tx(async (tx) => {
    const rows = await tx.query(sql`UPDATE espf.console_users SET password_hash = ${passwordHash}, role = coalesce(${role}, role), updated_at = now()
                                     WHERE name = ${name} RETURNING 1`);
    await tx.query(sql`DELETE FROM espf.console_sessions WHERE user_name = ${name}`);
    return rows.length > 0;
  });
}

/** Removes a user (their sessions go with them, ON DELETE CASCADE); false for no such user. */
export async function removeConsoleUser(db: Queryable, name: string): Promise<boolean> {
  return (await db.query(sql`DELETE FROM espf.console_users WHERE name = ${name} RETURNING 1`)).length > 0;
}

// ── sessions ─────────────────────────────────────────────────────────────────

export interface ConsoleSession { readonly user: string; readonly role: ConsoleRole; readonly csrf: string }

/**
 * A new session, which ends the user's earlier ones (and removes expired rows) in
 * the same statement. It expires after `idleS` without a request, and at the
 * latest `ttlS` after it began.
 */
export async function createConsoleSession(db: Queryable, key: Buffer, user: string, csrf: string, ttlS: number, idleS: number): Promise<void> {
  await db.query(sql`
    WITH gone AS (DELETE FROM espf.console_sessions WHERE expires_at < now() OR user_name = ${user})
    INSERT INTO espf.console_sessions (id_sha256, user_name, csrf_token, expires_at)
    VALUES (${key}, ${user}, ${csrf}, now() + make_interval(secs => least(${ttlS}::float8, ${idleS}::float8)))`);
}

/**
 * The session of this key if it has not expired, with its user's role; the
 * request moves its end to `idleS` from now, never past created_at +
 * espf.console.session_ttl.
 */
export async function consoleSession(db: Queryable, key: Buffer, idleS: number): Promise<ConsoleSession | null> {
  const [row] = await db.query(sql`
    WITH s AS (
      UPDATE espf.console_sessions s
         SET expires_at = least(s.created_at + c.session_ttl, now() + make_interval(secs => ${idleS}::float8))
        FROM espf.console c
       WHERE s.id_sha256 = ${key} AND s.expires_at > now()
      RETURNING s.user_name, s.csrf_token)
    SELECT u.name AS "user", u.role, s.csrf_token AS csrf
      FROM s JOIN espf.console_users u ON u.name = s.user_name`);
  return row ?? null;
}

export async function deleteConsoleSession(db: Queryable, key: Buffer): Promise<void> {
  await db.query(sql`DELETE FROM espf.console_sessions WHERE id_sha256 = ${key}`);
}

// ── audit ────────────────────────────────────────────────────────────────────

/** What a change returns to `audited`: the row before and after (as they go into the audit), and its result. */
export interface AuditedChange<T> { readonly before: unknown; readonly after: unknown; readonly result: T }

/** One row of espf.console_audit (before and after as JSON; null for none). */
export async function insertAudit(db: Queryable, user: string, action: string, target: string | null, before: unknown, after: unknown): Promise<void> {
  const json = (v: unknown) => (v === null || v === undefined ? null : JSON.stringify(v));
  await db.query(sql`INSERT INTO espf.console_audit (user_name, action, target, before, after)
                     VALUES (${user}, ${action}, ${target}, ${json(before)}::jsonb, ${json(after)}::jsonb)`);
}

/** The role every console change runs under (migrations/0021_console_role.sql, docs/security.md). */
export const CONSOLE_ROLE = 'espf_console';

/**
 * Runs a change and its espf.console_audit row in one transaction, as the role
 * espf_console (`SET LOCAL ROLE`: the login role of espf run is its member
 * WITH INHERIT FALSE, so it holds these rights only here): nothing is recorded
 * when the database refuses the change, or the role (42501).
 */
export function audited<T>(db: Queryable, user: string, action: string, target: string,
  change: (tx: Queryable) => Promise<AuditedChange<T>>): Promise<T> {
  return db.tx(async (tx) => {
    await tx.query(sql`SET LOCAL ROLE ${sql.ident(CONSOLE_ROLE)}`);
    const r = await change(tx);
    await insertAudit(tx, user, action, target, r.before, r.after);
    return r.result;
  });
}

export function recentAudit(db: Queryable, limit = 20): Promise<Pick<Row<'espf.console_audit'>, 'at' | 'user_name' | 'action' | 'target' | 'before' | 'after'>[]> {
  return db.query(sql`SELECT at, user_name, action, target, before, after FROM espf.console_audit ORDER BY i_audit DESC LIMIT ${limit}`);
}

// ── the views of the overview page ───────────────────────────────────────────

/** A row of espf.console_overview per handler, http handlers first. */
export function overviewHandlers(db: Queryable): Promise<Row<'espf.console_overview'>[]> {
  return db.query(sql`SELECT * FROM espf.console_overview ORDER BY kind DESC, handler`);
}

/** A row of espf.console_slots per instance, `lagging` past espf.maintenance.slot_lag_warn_bytes. */
export function overviewSlots(db: Queryable): Promise<(Row<'espf.console_slots'> & { lagging: boolean | null })[]> {
  return db.query(sql`
    SELECT s.*, s.lag_bytes > m.slot_lag_warn_bytes AS lagging
      FROM espf.console_slots s CROSS JOIN espf.maintenance m ORDER BY s.instance`);
}

export interface SeriesPoint { readonly handler: string; readonly bucket: number; readonly delivered: number; readonly failed: number }

/** Delivered and failed per handler over the last `hours` hours in `buckets` buckets (espf.console_series, bucket 0 the oldest). */
export function deliverySeries(db: Queryable, hours: number, buckets: number): Promise<SeriesPoint[]> {
  return db.query(sql`SELECT handler, bucket, delivered, failed FROM espf.console_series(${hours}, ${buckets})`);
}
