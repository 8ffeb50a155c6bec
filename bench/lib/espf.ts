import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from '@databases/pg';
import type { Db } from '../../src/db/connect.ts';
import { freePort } from '../../src/db/cluster.ts';
import { ROOT } from './paths.ts';
import { Unavailable } from './util.ts';

export interface EspfConfig {
  readonly instance: string;
  readonly receiverUrl: string;
  readonly tokenRate: number;
  readonly tokenBurstiness: number;
  readonly asyncMode?: boolean;
  /** Event types to capture (espf.event_types.enabled). */
  readonly types: readonly string[];
  /** (handler, event_type) rows of espf.subscriptions. */
  readonly subscriptions: readonly (readonly [string, string])[];
  /** Handlers to enable. */
  readonly handlers: readonly string[];
  /** EventSender sends a one-step shaped body (SHAPED_STEP_BODY, a row of espf.http_steps) instead of the EventSender body. */
  readonly shapedStep?: boolean;
}

/**
 * The body of the one-step shaped handler of the benchmarks: 4 variables in an
 * object of espf's own shape (the bench receiver reads variables.i_event).
 */
export const SHAPED_STEP_BODY = '{"event": event_type, "variables": {"i_event": variables.i_event, "i_account": variables.i_account, "i_env": variables.i_env, "at": variables.event_time}}';

/** Configures espf with plain SQL rows, as a DBA would (README, "Tour"). */
export async function configureEspf(db: Db, c: EspfConfig): Promise<void> {
  await db.tx(async (tx) => {
    await tx.query(sql`UPDATE espf.http_handlers
                          SET url = ARRAY[${c.receiverUrl}]::text[], token_rate = ${c.tokenRate},
                              token_burstiness = ${c.tokenBurstiness}, async_mode = ${c.asyncMode ?? true}
                        WHERE handler = 'EventSender'`);
    await tx.query(sql`UPDATE espf.handlers SET instance = ${c.instance}`);
    // Request steps (docs/handlers.md): one POST to the receiver URL itself (path ''), for every type ('*').
    await tx.query(sql`DELETE FROM espf.http_steps WHERE handler = 'EventSender'`);
    if (c.shapedStep) {
      await tx.query(sql`INSERT INTO espf.http_steps (handler, event_type, step, method, path, body)
                         VALUES ('EventSender', '*', 1, 'POST', '', ${SHAPED_STEP_BODY})`);
    }
    for (const [handler, type] of c.subscriptions) {
      await tx.query(sql`INSERT INTO espf.subscriptions (handler, event_type) VALUES (${handler}, ${type}) ON CONFLICT DO NOTHING`);
    }
    await tx.query(sql`UPDATE espf.handlers SET enabled = (name = ANY(${c.handlers}))`);
    await tx.query(sql`UPDATE espf.event_types SET enabled = (name = ANY(${c.types}))`);
  });
}

/** `espf run` as a child process, as an operator starts it. */
export class EspfProcess {
  private tail: string[] = [];
  private constructor(readonly child: ChildProcess, readonly logDir: string, readonly httpPort: number) {}

  /** Starts `node bin/espf.js run --instance <name> [...args]`; resolves when it prints `streaming`. */
  static async start(databaseUrl: string, instance: string, timeoutMs = 30_000, args: readonly string[] = []): Promise<EspfProcess> {
    const logDir = await mkdtemp(path.join(os.tmpdir(), 'espf-bench-log-'));
    const httpPort = await freePort();
    // BENCH_ESPF_BIN: another espf entry point (e.g. a build to compare against).
    const bin = process.env.BENCH_ESPF_BIN ?? path.join(ROOT, 'bin', 'espf.js');
    // BENCH_ESPF_NODE_ARGS: node flags NODE_OPTIONS refuses (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof").
    const nodeArgs = (process.env.BENCH_ESPF_NODE_ARGS ?? '').split(' ').filter(Boolean);
    // Started as its first line starts it (`#!/usr/bin/env -S node <flags>`), with the same node.
    const child = spawn(process.execPath, [...shebangFlags(bin), ...nodeArgs, bin, 'run', '--instance', instance, ...args], {
      cwd: ROOT,
      // BENCH_ESPF_NODE_OPTIONS: NODE_OPTIONS for espf run only (e.g. the heap limits of docs/operations.md, "Memory").
      env: {
        ...process.env, DATABASE_URL: databaseUrl, ESPF_LOG_DIR: logDir, ESPF_HTTP_PORT: String(httpPort),
        ...(process.env.BENCH_ESPF_NODE_OPTIONS ? { NODE_OPTIONS: process.env.BENCH_ESPF_NODE_OPTIONS } : {}),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const p = new EspfProcess(child, logDir, httpPort);
    let ready = false;
    // BENCH_ESPF_OUTPUT_DIR: keep all that each espf run prints, in <dir>/<instance>.log (appended to by a restart).
    const keep = process.env.BENCH_ESPF_OUTPUT_DIR ? createWriteStream(path.join(process.env.BENCH_ESPF_OUTPUT_DIR, `${instance}.log`), { flags: 'a' }) : undefined;
    if (keep) child.once('close', () => keep.end());
    const onData = (chunk: Buffer) => {
      keep?.write(chunk);
      const text = chunk.toString('utf8');
      for (const line of text.split('\n')) {
        if (!line.trim()) continue;
        p.tail.push(line.trim());
        if (!p.firstError && /error|fatal|cannot|refused/i.test(line)) p.firstError = line.trim().slice(0, 300);
      }
      if (p.tail.length > 40) p.tail.splice(0, p.tail.length - 40);
      return text;
    };
    try {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Unavailable(`espf run did not print 'streaming' within ${timeoutMs / 1000} s; last output: ${p.lastOutput()}`)), timeoutMs);
        child.once('exit', (code, signal) => {
          clearTimeout(t);
          if (!ready) reject(new Unavailable(`espf run exited (${code ?? signal}) before streaming: ${p.lastOutput()}`));
        });
        child.once('error', (err) => { clearTimeout(t); reject(new Unavailable(`espf run could not start: ${err.message}`)); });
        child.stdout!.on('data', (c: Buffer) => {
          if (/streaming/.test(onData(c)) && !ready) { ready = true; clearTimeout(t); resolve(); }
        });
        child.stderr!.on('data', onData);
      });
    } catch (err) {
      await p.stop();
      throw err;
    }
    return p;
  }

  private firstError?: string;

  /** The first line that looks like an error, whole (at most 300 characters), then the end of the last lines. */
  lastOutput(): string {
    const err = this.firstError ? `${this.firstError} … ` : '';
    const tail = this.tail.slice(-4).join(' | ');
    const s = err + (tail.length > 300 ? `…${tail.slice(-300)}` : tail);
    return s || '(no output)';
  }

  get alive(): boolean { return this.child.exitCode === null && this.child.signalCode === null; }

  /** Peak resident set size so far (VmHWM), in MB. */
  peakRssMb(): number {
    try {
      const status = readFileSync(`/proc/${this.child.pid}/status`, 'utf8');
      const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(status);
      return m ? Number(m[1]) / 1024 : NaN;
    } catch {
      return NaN;
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.alive) {
      const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
      this.child.kill('SIGTERM');
      const t = setTimeout(() => { if (this.alive) this.child.kill('SIGKILL'); }, graceMs);
      await exited;
      clearTimeout(t);
    }
    await rm(this.logDir, { recursive: true, force: true });
  }
}

/** The node flags on the first line of an entry point (`#!/usr/bin/env -S node --flag …`). */
export function shebangFlags(file: string): string[] {
  const first = readFileSync(file, 'utf8').split('\n', 1)[0]!;
  const m = /^#!\S*env -S node((?: \S+)*)\s*$/.exec(first);
  return m ? m[1]!.split(' ').filter(Boolean) : [];
}
