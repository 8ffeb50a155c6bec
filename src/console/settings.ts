import type { Db } from '../db/connect.ts';
import * as store from './store.ts';

/** How long the console keeps espf.console (and the user count) before it reads them again. */
export const SETTINGS_TTL_MS = 2000;

/**
 * The console's settings, read from the database at most once per
 * SETTINGS_TTL_MS however many requests arrive (docs/console.md, "Load"):
 * concurrent requests while a read is under way share it, and a failed read
 * is not kept (the next request tries again). Anonymous requests need the
 * settings before anything else, so a flood of them costs one query per
 * period, not one per request.
 */
export class SettingsCache {
  private value: { settings: store.ConsoleSettings | null; at: number } | null = null;
  private reading: Promise<store.ConsoleSettings | null> | null = null;

  constructor(private readonly db: Db, private readonly ttlMs = SETTINGS_TTL_MS, private readonly now = () => Date.now()) {}

  get(): Promise<store.ConsoleSettings | null> {
    if (this.value && this.now() - this.value.at < this.ttlMs) return Promise.resolve(this.value.settings);
    this.reading ??= store.readSettings(this.db).then(
      (settings) => { this.value = { settings, at: this.now() }; this.reading = null; return settings; },
      (err: unknown) => { this.reading = null; throw err; },
    );
    return this.reading;
  }
}
