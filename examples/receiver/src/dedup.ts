// A bounded set of the i_event values already provisioned, least recently seen evicted first.
//
// In memory only: a restart forgets it, and espf may then redeliver an event that was
// provisioned just before the restart (a retry after a lost reply). To make it durable,
// keep the same two operations on storage your provisioning already commits to, e.g.
//
//   CREATE TABLE processed_events (i_event bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());
//   -- in the same transaction as the provisioning change:
//   INSERT INTO processed_events (i_event) VALUES ($1) ON CONFLICT DO NOTHING RETURNING i_event;
//   -- no row returned = a repeat: answer 200 and do nothing; purge rows older than espf's retry horizon
//
// or Redis `SET espf:i_event:<n> 1 NX EX 604800` (answer 200 without provisioning when it returns nil).

export class LruSet {
  readonly #max: number;
  readonly #items = new Map<string, true>(); // Map keeps insertion order: first key = least recent

  constructor(max: number) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`LruSet capacity must be a positive integer, got ${max}`);
    this.#max = max;
  }

  get size(): number {
    return this.#items.size;
  }

  /** True when the key is present; a hit makes it the most recent. */
  has(key: string): boolean {
    if (!this.#items.has(key)) return false;
    this.#items.delete(key);
    this.#items.set(key, true);
    return true;
  }

  add(key: string): void {
    this.#items.delete(key);
    this.#items.set(key, true);
    while (this.#items.size > this.#max) {
      const oldest = this.#items.keys().next();
      if (oldest.done) break;
      this.#items.delete(oldest.value);
    }
  }
}
