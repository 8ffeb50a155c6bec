import type { Db } from '../db/connect.ts';
import * as store from './store.ts';

/** How long the console keeps espf.console (and the user count) before it reads them again. */
export const SETTINGS_TTL_MS = 2000;

/**
 * One read shared by everyone who asks within `ttlMs`: concurrent callers
 * while a read is under way share it, and a failed read is not kept (the next
 * caller tries again). `at`: when the kept value was read (ms, of `now`).
 */
export class Cached<T> {
  private value: { v: T; at: number } | null = null;
  private reading: Promise<T> | null = null;

  constructor(private readonly read: () => Promise<T>, private readonly ttlMs: number, private readonly now = () => Date.now()) {}

  get(): Promise<T> {
    if (this.value && this.now() - this.value.at < this.ttlMs) return Promise.resolve(this.value.v);
    this.reading ??= this.read().then(
      (v) => { this.value = { v, at: this.now() }; this.reading = null; return v; },
      (err: unknown) => { this.reading = null; throw err; },
    );
    return this.reading;
  }

  /** When the value get() last returned was read, or null before the first read. */
  get at(): number | null {
    return this.value?.at ?? null;
  }
}

/**
 * The console's settings, read from the database at most once per
 * SETTINGS_TTL_MS however many requests arrive (docs/console.md, "Load").
 * Anonymous requests need the settings before anything else, so a flood of
 * them costs one query per period, not one per request.
 */
export class SettingsCache extends Cached<store.ConsoleSettings | null> {
  constructor(db: Db, ttlMs = SETTINGS_TTL_MS, now = () => Date.now()) {
    super(() => store.readSettings(db), ttlMs, now);
  }
}
