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

/** User + system CPU seconds of a process so far; null when it is gone or /proc cannot be read. */
export function cpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces and parentheses): state is field 3.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / clockTicks();   // utime (14), stime (15)
  } catch {
    return null;
  }
}

/** The processes of the PostgreSQL server `db` talks to (backends, WAL senders, background workers). */
export async function postgresPids(db: Db): Promise<number[]> {
  const rows = await db.query(sql`SELECT pid FROM pg_stat_activity`) as { pid: number }[];
  return rows.map((r) => r.pid);
}

export interface CpuSplit {
  readonly espf: number;
  readonly postgres: number;
  readonly receiver: number;
}

/**
 * A reading of the three, to be subtracted from a later one. PostgreSQL
 * processes that started after the first reading count from zero; those that
 * ended in between are not counted (the figures leave them out: a lower bound).
 */
export class CpuMeter {
  private constructor(private readonly start: Map<number, number>, private readonly espfPid: number, private readonly receiverPid: number,
    private readonly espf0: number, private readonly receiver0: number) {}

  static async begin(db: Db, espfPid: number, receiverPid: number): Promise<CpuMeter> {
    const start = new Map<number, number>();
    for (const pid of await postgresPids(db)) {
      const s = cpuSeconds(pid);
      if (s !== null) start.set(pid, s);
    }
    return new CpuMeter(start, espfPid, receiverPid, cpuSeconds(espfPid) ?? 0, cpuSeconds(receiverPid) ?? 0);
  }

  /** CPU seconds each used since begin(). */
  async end(db: Db): Promise<CpuSplit> {
    let postgres = 0;
    for (const pid of new Set([...this.start.keys(), ...await postgresPids(db)])) {
      const s = cpuSeconds(pid);
      if (s !== null) postgres += s - (this.start.get(pid) ?? 0);
    }
    return {
      espf: (cpuSeconds(this.espfPid) ?? this.espf0) - this.espf0,
      postgres,
      receiver: (cpuSeconds(this.receiverPid) ?? this.receiver0) - this.receiver0,
    };
  }
}
