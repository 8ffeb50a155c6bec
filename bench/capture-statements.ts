/**
 * What capture costs one statement, in CPU time of the backend that runs it
 * (for iterating on the capture rules; finer than the pgbench ratio of
 * bench/capture-overhead.ts). A throwaway durable cluster and the small
 * template of `make bench`; one connection per database, named prepared
 * statements, each statement its own transaction (synchronous_commit off, so
 * the time is CPU, not waiting for the disk). The backend's CPU time is read
 * from /proc/<pid>/schedstat (nanoseconds) around each round of statements.
 *
 * The statements, on accounts whose funds never cross zero:
 *   balance  UPDATE billing.account SET balance = balance ± 1   (no event: the mix's 80 %)
 *   block    UPDATE billing.account SET blocked = NOT blocked    (Account/Blocked or Unblocked + Subscriber/Updated)
 *   insert   INSERT INTO billing.account                         (Account/New + Subscriber/Created)
 *
 * Variants, measured in interleaved rounds (ABBA) so that both see the same
 * load on a shared machine: capture off and every type enabled on the working
 * tree's SQL; with CAPTURE_BASE=<git ref>, every type enabled on that commit's
 * migrations/ and sql/ too. CAPTURE_EXPERIMENT=<file.sql>[,<file.sql>…] adds, for
 * each file, a database of the working tree where that file ran after every type
 * was enabled (to measure a change by hand before the compiler writes it).
 *
 *   CAPTURE_BASE=main node --import tsx bench/capture-statements.ts
 *
 * Prints µs per statement: the median of the rounds and their spread, and the
 * median of each round's difference to the base (capture off without a base).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from '@databases/pg';
import type { Connection } from '@databases/pg';
import { connect, type Db } from '../src/db/connect.ts';
import { cloneDatabase, createTemplate, dropDatabase, startServer } from './lib/db.ts';
import { ROOT } from './lib/paths.ts';
import { log, median, round } from './lib/util.ts';

const rounds = Math.max(2, Number(process.env.CAPTURE_ROUNDS ?? 8));
const perRound = Math.max(100, Number(process.env.CAPTURE_STATEMENTS ?? 1500));
const base = process.env.CAPTURE_BASE;
const experiment = process.env.CAPTURE_EXPERIMENT;
const kinds = (process.env.CAPTURE_KINDS ?? 'balance,block,insert').split(',');

interface Variant { label: string; db: Db; c: Connection; done: () => void; pid: number; next: number }

function cpuNs(pid: number): number {
  return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
}

async function open(url: string, label: string, enable: boolean, lo: number, hi: number, customer: number, extra?: string): Promise<Variant> {
  const db = connect({ connectionString: url, poolSize: 1, applicationName: 'espf-bench' });
  // One connection held for the whole run (its backend is the one measured).
  const c = await new Promise<{ c: Connection; done: () => void }>((resolve, reject) => {
    db.task((conn) => new Promise<void>((done) => resolve({ c: conn, done }))).catch(reject);
  });
  const q = (text: string) => c.c.query(sql.__dangerous__rawValue(text));
  await q('SET synchronous_commit = off');
  // Accounts far from zero funds: a balance update never crosses.
  await q(`UPDATE billing.account SET balance = 100000, credit_limit = NULL WHERE i_account BETWEEN ${lo} AND ${hi}`);
  await q('CREATE SEQUENCE IF NOT EXISTS public.bench_account_seq');
  await q(`UPDATE espf.event_types SET enabled = ${enable}`);
  if (extra) await q(extra);
  await q('VACUUM ANALYZE billing.account');
  await q('PREPARE balance(numeric, bigint) AS UPDATE billing.account SET balance = balance + $1 WHERE i_account = $2');
  await q('PREPARE block(bigint) AS UPDATE billing.account SET blocked = NOT blocked WHERE i_account = $1');
  await q(`PREPARE ins(bigint) AS INSERT INTO billing.account (id, i_customer, i_product, balance) VALUES ('pgb' || nextval('public.bench_account_seq'), ${customer}, $1, 10)`);
  const [{ pid }] = await q('SELECT pg_backend_pid() AS pid') as [{ pid: number }];
  return { label, db, c: c.c, done: c.done, pid: Number(pid), next: 0 };
}

async function round1(v: Variant, kind: string, n: number, lo: number, hi: number): Promise<number> {
  const span = hi - lo + 1;
  const t0 = cpuNs(v.pid);
  for (let i = 0; i < n; i++) {
    const aid = lo + (v.next++ % span);
    const text = kind === 'balance' ? `EXECUTE balance(${(v.next & 2) ? 1 : -1}, ${aid})`
      : kind === 'block' ? `EXECUTE block(${aid})` : `EXECUTE ins(${1 + (i % 10)})`;
    await v.c.query(sql.__dangerous__rawValue(text));
  }
  return (cpuNs(v.pid) - t0) / n / 1000;
}

async function main(): Promise<void> {
  const server = await startServer();
  let baseDir: string | undefined;
  const names: string[] = [];
  const variants: Variant[] = [];
  try {
    const sizes = { fanoutAccounts: 5_000, accounts: 10_000 };
    const tpl = `espf_bench_tpl_${process.pid}`;
    const seed = await createTemplate(server.adminUrl, tpl, sizes);
    let baseSeed;
    if (base) {
      baseDir = mkdtempSync(path.join(os.tmpdir(), 'espf-capture-base-'));
      execFileSync('sh', ['-c', `git -C "${ROOT}" archive "${base}" migrations sql | tar -x -C "${baseDir}"`]);
      baseSeed = await createTemplate(server.adminUrl, `espf_bench_tpl_base_${process.pid}`, sizes,
        { migrations: path.join(baseDir, 'migrations'), repeatable: path.join(baseDir, 'sql') });
    }
    const lo = seed.accounts[0];
    const hi = lo + 999;
    const customer = seed.bigCustomer + 1;
    const db = async (template: string, label: string, enable: boolean, extra?: string) => {
      const name = `bench_stmt_${names.length}_${process.pid}`;
      names.push(name);
      variants.push(await open(await cloneDatabase(server.adminUrl, template, name), label, enable, lo, hi, customer, extra));
      log(`${label}: backend pid ${variants[variants.length - 1]!.pid}`);
    };
    await db(tpl, 'off', false);
    if (baseSeed) await db(baseSeed.template, `base ${base}`, true);
    await db(tpl, 'working tree', true);
    for (const file of experiment ? experiment.split(',') : []) await db(tpl, `working tree + ${path.basename(file)}`, true, readFileSync(file, 'utf8'));
    log(`load ${os.loadavg().map((x) => round(x, 2)).join(' ')}; ${rounds} rounds of ${perRound} statements`);
    for (const kind of kinds) {
      const us: number[][] = variants.map(() => []);
      for (const v of variants) await round1(v, kind, 200, lo, hi);  // warm-up
      for (let r = 0; r < rounds; r++) {
        const order = r % 4 === 0 || r % 4 === 3 ? variants.map((_, k) => k) : variants.map((_, k) => variants.length - 1 - k);
        for (const k of order) us[k]!.push(await round1(variants[k]!, kind, perRound, lo, hi));
      }
      // Against the base (or capture off): the median of the differences of rounds run side by side.
      const ref = base ? 1 : 0;
      for (const [k, v] of variants.entries()) {
        const s = [...us[k]!].sort((a, b) => a - b);
        const diffs = us[k]!.map((x, r) => x - us[ref]![r]!).sort((a, b) => a - b);
        const vs = k === ref ? '' : `; paired with ${variants[ref]!.label}: ${round(median(diffs), 1)} µs (${round(diffs[0]!, 1)}…${round(diffs[diffs.length - 1]!, 1)})`;
        log(`${kind.padEnd(8)} ${v.label.padEnd(40)} ${round(median(s), 1)} µs (${round(s[0]!, 1)}–${round(s[s.length - 1]!, 1)})${vs}`);
      }
    }
    log(`load ${os.loadavg().map((x) => round(x, 2)).join(' ')}`);
  } finally {
    for (const v of variants) { v.done(); await v.db.dispose().catch(() => undefined); }
    for (const n of names) await dropDatabase(server.adminUrl, n).catch(() => undefined);
    await server.stop();
    if (baseDir) rmSync(baseDir, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
