// A micro-benchmark of request steps (docs/handlers.md, "Request steps"): the
// CPU time of building one request's body in espf run, the plain EventSender
// body against a one-step shaped body built from 4 variables, through the
// walker of src/delivery/steps/expression.ts and through the JSONata evaluator.
// Not part of `make bench` (bench/README.md, "Request steps").
//
//   npx tsx bench/steps-render.ts [iterations]
import { requestBody } from '../src/delivery/http-client.ts';
import { StepPlan } from '../src/delivery/steps/plan.ts';
import { renderStep, stepInput } from '../src/delivery/steps/render.ts';
import { SHAPED_STEP_BODY } from './lib/espf.ts';

const N = Number(process.argv[2] ?? 200_000);
const event = { i_event: 1234, event_type: 'Account/Blocked', variables: { i_event: 1234, i_env: 1, i_account: 42, event_time: '2026-11-25 21:40:07' }, source_i_event: null };
const row = (body: string) => ({
  handler: 'EventSender', event_type: '*', step: 1, name: null, method: 'POST', path: '', headers: {}, body,
  content_type: 'application/json', success_when: null, refuse_when: null, exists_when: null,
});
const base = 'http://127.0.0.1:8080/events';

async function time(what: string, fn: () => unknown): Promise<void> {
  for (let i = 0; i < 2000; i++) await fn(); // warm up
  const t0 = process.cpuUsage();
  const w0 = performance.now();
  for (let i = 0; i < N; i++) await fn();
  const cpu = process.cpuUsage(t0);
  const wall = performance.now() - w0;
  console.log(`${what.padEnd(58)} ${((cpu.user + cpu.system) / N).toFixed(2).padStart(7)} us cpu/op  ${(wall * 1000 / N).toFixed(2).padStart(7)} us wall/op`);
}

const fast = StepPlan.compile([row(SHAPED_STEP_BODY)]).stepsFor('Account/Blocked')[0]!;
// The same body in a block: JSONata's evaluator, not the walker.
const slow = StepPlan.compile([row(`(${SHAPED_STEP_BODY})`)]).stepsFor('Account/Blocked')[0]!;
if (!fast.body?.isFast || slow.body?.isFast) throw new Error('the shapes are not what this benchmark measures');

console.log(`${N} iterations, node ${process.version}`);
await time('plain EventSender body (requestBody)', () => requestBody(event, {}));
await time('shaped body, walker (renderStep, steps input included)', () => renderStep(fast, stepInput(event, {}, [fast], []), base));
await time('shaped body, JSONata evaluator (renderStep)', () => renderStep(slow, stepInput(event, {}, [slow], []), base));
