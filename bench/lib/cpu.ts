/**
 * CPU time of the processes on the path of an event (espf run, the PostgreSQL
 * server processes, the receiver), read from /proc/<pid>/stat (Linux), so a
 * figure can say what one event costs in each of them.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { sql } from '@databases/pg';
import type { Db } from '../../src/db/connect.ts';

let ticksPerSecond: number | undefined;

function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** User and system CPU seconds of a process so far, apart; null when it is gone or /proc cannot be read. */
export function cpuUserSystem(pid: number): { user: number; system: number } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces and parentheses): state is field 3.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { user: Number(rest[11]) / clockTicks(), system: Number(rest[12]) / clockTicks() };   // utime (14), stime (15)
  } catch {
    return null;
  }
}

/** User + system CPU seconds of a process so far; null when it is gone or /proc cannot be read. */
export function cpuSeconds(pid: number): number | null {
  const t = cpuUserSystem(pid);
  return t === null ? null : t.user + t.system;
}

/**
 * What a PostgreSQL process does on the path of an event: `walsender` (the
 * slot's decoding), `espf` (a connection of `espf run`: recording outcomes,
 * waiting pages, heartbeats), `billing` (the other client connections: the
 * bench's billing writes with their capture triggers, and its own reads),
 * `background` (checkpointer, WAL writer, autovacuum, …).
 */
export type PostgresPart = 'walsender' | 'espf' | 'billing' | 'background';
export const POSTGRES_PARTS: readonly PostgresPart[] = ['walsender', 'espf', 'billing', 'background'];

/** The processes of the PostgreSQL server `db` talks to (backends, WAL senders, background workers), each with its part. */
export async function postgresPids(db: Db): Promise<Map<number, PostgresPart>> {
  const rows = await db.query(sql`
    SELECT pid, CASE WHEN backend_type = 'walsender' THEN 'walsender'
                     WHEN backend_type <> 'client backend' THEN 'background'
                     WHEN application_name LIKE 'espf run%' THEN 'espf'
                     ELSE 'billing' END AS part
      FROM pg_stat_activity`) as { pid: number; part: PostgresPart }[];
  return new Map(rows.map((r) => [r.pid, r.part]));
}

export interface CpuSplit {
  readonly espf: number;
  readonly postgres: number;
  /** `postgres` by part (a process counts in the part it had at the end, else at the start). */
  readonly postgresParts: Readonly<Record<PostgresPart, number>>;
  readonly receiver: number;
  /** `espf` in user and in system (kernel) time: on loopback the kernel's TCP work is charged to the sender. */
  readonly espfSystem: number;
}

/**
 * A reading of the three, to be subtracted from a later one. PostgreSQL
 * processes that started after the first reading count from zero; those that
 * ended in between are not counted (the figures leave them out: a lower bound).
 */
export class CpuMeter {
  private constructor(private readonly start: Map<number, { cpu: number; part: PostgresPart }>, private readonly espfPid: number, private readonly receiverPid: number,
    private readonly espf0: number, private readonly receiver0: number, private readonly espfSystem0: number) {}

  static async begin(db: Db, espfPid: number, receiverPid: number): Promise<CpuMeter> {
    const start = new Map<number, { cpu: number; part: PostgresPart }>();
    for (const [pid, part] of await postgresPids(db)) {
      const cpu = cpuSeconds(pid);
      if (cpu !== null) start.set(pid, { cpu, part });
    }
    const espf = cpuUserSystem(espfPid);
    return new CpuMeter(start, espfPid, receiverPid, espf ? espf.user + espf.system : 0, cpuSeconds(receiverPid) ?? 0, espf?.system ?? 0);
  }

  /** CPU seconds each used since begin(). */
  async end(db: Db): Promise<CpuSplit> {
    let postgres = 0;
    const postgresParts: Record<PostgresPart, number> = { walsender: 0, espf: 0, billing: 0, background: 0 };
    const now = await postgresPids(db);
    for (const pid of new Set([...this.start.keys(), ...now.keys()])) {
      const s = cpuSeconds(pid);
      const before = this.start.get(pid);
      if (s === null) continue;
      const used = s - (before?.cpu ?? 0);
      postgres += used;
      postgresParts[now.get(pid) ?? before!.part] += used;
    }
    const espf = cpuUserSystem(this.espfPid);
    return {
      espf: (espf ? espf.user + espf.system : this.espf0) - this.espf0,
      postgres,
      postgresParts,
      receiver: (cpuSeconds(this.receiverPid) ?? this.receiver0) - this.receiver0,
      espfSystem: (espf ? espf.system : this.espfSystem0) - this.espfSystem0,
    };
  }
}
