// A micro-benchmark of espf's own client path, without the stream, the queue or
// the database: the CPU time per request of src/delivery/http-client.ts `post`
// (the EventSender body) or of src/delivery/steps/run.ts `runSteps` (the
// one-step shaped body of the e2e_shaped figure, SHAPED_STEP_BODY), 64 requests
// in flight against the bench receiver, beside a bare undici Pool (`bare`), the
// client of the http_ceiling figure. Not part of `make bench` (bench/README.md,
// "Request steps").
//
//   npx tsx bench/client-path.ts plain|shaped|bare [requests] [--tree DIR] [--rate N]
//
// --rate N: N requests a second (at most 64 in flight) instead of as many as
// 64 in flight carry: the CPU time per request depends on how many answers
// each turn of the event loop handles, so builds compared at one rate are
// compared at one batching, also on a machine other work slows down.
// --tree DIR: the compiled dist/ of another checkout (e.g. a worktree of main
// built with `npm run build`), to compare two builds in turns on one machine.
import path from 'node:path';
import { Pool } from 'undici';
import type { HttpSettings } from '../src/config/snapshot.ts';
import type { Delivery } from '../src/delivery/keyed-queue.ts';
import type { AnswerNeeds } from '../src/delivery/steps/plan.ts';
import { eventBody } from './http-ceiling.ts';
import { SHAPED_STEP_BODY } from './lib/espf.ts';
import { Receiver } from './lib/receiver-client.ts';
import { sleep } from './lib/util.ts';

const args = process.argv.slice(2);
const treeAt = args.indexOf('--tree');
const tree = treeAt >= 0 ? path.resolve(args.splice(treeAt, 2)[1]!) : null;
const rateAt = args.indexOf('--rate');
const rate = rateAt >= 0 ? Number(args.splice(rateAt, 2)[1]) : null;
const mode = args[0] ?? 'plain';
const N = Number(args[1] ?? 40_000);
const IN_FLIGHT = 64;
if (!['plain', 'shaped', 'bare'].includes(mode) || (rate !== null && !(rate > 0))) throw new Error('usage: bench/client-path.ts plain|shaped|bare [requests] [--tree DIR] [--rate N]');

const load = (module: string) => import(tree ? path.join(tree, 'dist', `${module}.js`) : `../src/${module}.ts`);
const { HttpClient, requestBody } = await load('delivery/http-client') as typeof import('../src/delivery/http-client.ts');
const { StepPlan } = await load('delivery/steps/plan') as typeof import('../src/delivery/steps/plan.ts');
const { runSteps } = await load('delivery/steps/run') as typeof import('../src/delivery/steps/run.ts');

const receiver = await Receiver.start();
const url = receiver.url;
const settings = {
  url: [url], auth_method: 'None', auth_header: 'Authorization', basic_auth_user: null, basic_auth_key: null, custom_auth_type: null,
  custom_auth_credentials: null, signature_auth_key_id: null, signature_auth_key: null, ca_file: null, async_mode: true,
  request_timeout: 30, max_wait_time: 30, max_attempts: 3, event_names: {},
} as unknown as HttpSettings;
const steps = StepPlan.compile([{
  handler: 'EventSender', event_type: '*', step: 1, name: null, method: 'POST', path: '', headers: {}, body: SHAPED_STEP_BODY,
  content_type: 'application/json', success_when: null, refuse_when: null, exists_when: null,
}]).stepsFor('Account/Blocked');
const client = new HttpClient(null);
const pool = new Pool(url, { connections: 128, pipelining: 1, keepAliveTimeout: 30_000 });
const message = { handler: 'EventSender', event: { i_event: 'bench-1' } };
const event = (i: number) => ({
  i_event: i, event_type: 'Account/Blocked', source_i_event: null,
  variables: { i_event: i, i_env: 1, i_account: 100_000 + (i % 100_000), event_time: '2026-11-25 21:40:07' },
});

let next = 1;
async function one(): Promise<void> {
  const i = next++;
  if (mode === 'bare') {
    const r = await pool.request({ path: '/', method: 'POST', headers: { 'content-type': 'application/json', date: new Date().toUTCString() }, body: eventBody(i) });
    await r.body.dump();
    if (r.statusCode !== 200) throw new Error(`HTTP ${r.statusCode}`);
    return;
  }
  const e = event(i);
  const r = mode === 'plain'
    ? await client.post(url, requestBody(e, {}), settings, { handler: 'EventSender', event: e })
    : await runSteps({ item: { event: e, handler: 'EventSender' }, stepsDone: 0, stepAnswers: [] } as unknown as Delivery, steps, settings, {
      handler: 'EventSender', answered: () => undefined, checkpoint: () => Promise.resolve(),
      // A build before CompiledStep.answer passes the step number and reads the whole answer.
      request: (req, s, step) => client.request(req, s, message, (step as unknown as { answer?: AnswerNeeds }).answer),
    }, undefined);
  if (!r.ok) throw new Error(r.reason);
}

async function run(count: number): Promise<void> {
  if (rate !== null) return paced(count, rate);
  let left = count;
  await Promise.all(Array.from({ length: IN_FLIGHT }, async () => { while (left-- > 0) await one(); }));
}

/** `count` requests started at `perSecond`, at most IN_FLIGHT at once. */
async function paced(count: number, perSecond: number): Promise<void> {
  const t0 = performance.now();
  let started = 0;
  let inFlight = 0;
  let failed: unknown = null;
  while (started < count && failed === null) {
    const due = Math.min(count, Math.floor(((performance.now() - t0) / 1000) * perSecond));
    for (; started < due && inFlight < IN_FLIGHT; started++) {
      inFlight++;
      one().then(() => { inFlight--; }, (err: unknown) => { inFlight--; failed = err; });
    }
    await sleep(5);
  }
  while (inFlight > 0) await sleep(5);
  if (failed !== null) throw failed;
}

try {
  await run(5_000); // warm up
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await run(N);
  const cpu = process.cpuUsage(cpu0);
  const seconds = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ mode, tree: tree ?? 'src', requests: N, rate, cpu_us_per_request: Math.round(((cpu.user + cpu.system) / N) * 10) / 10, rps: Math.round(N / seconds) }));
} finally {
  await client.close();
  await pool.close();
  await receiver.stop();
}
