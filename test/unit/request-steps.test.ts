// Pure unit tests (no database): request steps' expressions, plan, rendering
// and success rules (src/delivery/steps/).
import assert from 'node:assert/strict';
import jsonata from 'jsonata';
import type { HttpSettings } from '../../src/config/snapshot.ts';
import type { Db } from '../../src/db/connect.ts';
import type { StepRow } from '../../src/db/config.ts';
import type { Item } from '../../src/delivery/item.ts';
import { headersObject } from '../../src/delivery/http-client.ts';
import { ResultsWriter } from '../../src/delivery/results-writer.ts';
import type { Logger } from '../../src/log/logger.ts';
import { Expression, ExpressionError } from '../../src/delivery/steps/expression.ts';
import { judge, parseBody } from '../../src/delivery/steps/judge.ts';
import { parsePath, StepPlan } from '../../src/delivery/steps/plan.ts';
import { join, publicSettings, renderStep, RenderError, stepInput } from '../../src/delivery/steps/render.ts';
import { recordsOfCall } from '../support/record-call.ts';

const row = (r: Partial<StepRow>): StepRow => ({
  handler: 'HSS', event_type: 'Account/New', step: 1, name: null, method: 'POST', path: '', headers: {}, body: null,
  content_type: 'application/json', success_when: null, refuse_when: null, exists_when: null, ...r,
});
const event = { event_type: 'Account/New', variables: { i_event: 9, i_account: 42, id: 'imsi-1', tags: ['a', 'b'], o: { x: 1 } } };
const settings = { url: ['https://hss.example.com/api/'], auth_method: 'None', event_names: {}, async_mode: true, request_timeout: 5, max_attempts: 3 } as unknown as HttpSettings;

describe('request steps (pure)', () => {
  it('the fast path gives what JSONata gives, for paths, literals and objects of them', async () => {
    const input = stepInput(event, publicSettings('HSS', settings), [], []);
    for (const text of ['variables.id', 'variables.nope', 'variables.o', 'variables.o.x', 'event_type', '"8000"', '42', 'true', 'null',
      '{"imsi": variables.id, "amf": "8000", "n": variables.i_account, "gone": variables.nope}', 'variables.tags', 'settings.handler']) {
      const e = Expression.compile(text);
      const want = await jsonata(text).evaluate(input);
      assert.deepEqual(await e.evaluate(input), want === undefined ? undefined : JSON.parse(JSON.stringify(want)), text);
    }
    assert.ok(Expression.compile('variables.id').isFast);
    assert.ok(Expression.compile('{"a": variables.id, "b": "x"}').isFast);
    assert.ok(!Expression.compile('$string(variables.i_account)').isFast);
    assert.ok(!Expression.compile('variables[0]').isFast);
  });

  it('an expression that does not compile is an ExpressionError with its position', () => {
    assert.throws(() => Expression.compile('{"a": variables.}'), (e: unknown) => e instanceof ExpressionError && /S0211 at character 17/.test(e.message));
  });

  it('renders at once when the walker evaluates every expression, else through a promise, to the same request', async () => {
    const input = stepInput(event, publicSettings('HSS', settings), [], []);
    const fast = StepPlan.compile([row({ path: '/sub/{variables.id}', headers: { 'X-Acc': 'variables.i_account' }, body: '{"imsi": variables.id}' })]);
    const r = renderStep(fast.stepsFor('Account/New')[0]!, input, settings.url[0]!);
    assert.ok(!(r instanceof Promise), 'no promise when the walker evaluates it all');
    assert.equal(r.target, '/api/sub/imsi-1');
    assert.equal(r.headers['x-acc'], '42');
    assert.equal(r.body, '{"imsi":"imsi-1"}');
    // JSONata's evaluator for the header: the path before it and the body after it, in order, the same values.
    const slow = StepPlan.compile([row({ path: '/sub/{variables.id}', headers: { 'X-Acc': '$string(variables.i_account)' }, body: '{"imsi": variables.id}' })]);
    const p = renderStep(slow.stepsFor('Account/New')[0]!, input, settings.url[0]!);
    assert.ok(p instanceof Promise);
    const q = await p;
    assert.deepEqual({ target: q.target, headers: q.headers, body: q.body }, { target: r.target, headers: r.headers, body: r.body });
    // A failure after a JSONata evaluation is the rejection, with the field named.
    const bad = StepPlan.compile([row({ path: '/sub/{$string(variables.i_account)}', headers: { 'X-O': 'variables.o' } })]);
    await assert.rejects(async () => renderStep(bad.stepsFor('Account/New')[0]!, input, settings.url[0]!),
      (e: unknown) => e instanceof RenderError && /^header X-O: is an object, not a string/.test(e.message));
  });

  it('JSONata evaluates each of its expressions once, in order, and none after the first value that cannot be used', async () => {
    const env = { ESPF_SECRET_A: 'alpha', ESPF_SECRET_B: 'bravo', ESPF_SECRET_C: 'charlie' };
    const input = stepInput(event, {}, [], []);
    // Walker values between JSONata ones: the rendering starts over after each JSONata value; $secret() records what it gave.
    const plan = StepPlan.compile([row({
      path: '/{$secret("env:ESPF_SECRET_A")}/{variables.id}',
      headers: { 'X-B': '$secret("env:ESPF_SECRET_B")', 'X-Id': 'variables.i_account' },
      body: '{"c": $secret("env:ESPF_SECRET_C"), "id": variables.id}',
    })]);
    const r = await renderStep(plan.stepsFor('Account/New')[0]!, input, settings.url[0]!, env);
    assert.equal(r.target, '/api/alpha/imsi-1');
    assert.equal(r.url, 'https://hss.example.com/api/alpha/imsi-1');
    assert.deepEqual(r.headers, { 'x-b': 'bravo', 'x-id': '42', 'content-type': 'application/json' });
    assert.equal(r.body, '{"c":"charlie","id":"imsi-1"}');
    assert.deepEqual(r.secrets, ['alpha', 'bravo', 'charlie'], 'each $secret() once, in order');
    // The path's value cannot be used: its error, not the body's (whose variable is not set: never evaluated).
    const bad = StepPlan.compile([row({ path: '/{$merge([variables.o])}', body: '$secret("env:ESPF_SECRET_UNSET")' })]);
    await assert.rejects(async () => renderStep(bad.stepsFor('Account/New')[0]!, input, settings.url[0]!, env),
      (e: unknown) => e instanceof RenderError && /^path \{\$merge\(\[variables\.o\]\)\}: is an object, not a string or number$/.test(e.message));
  });

  it('an expression that runs too long or nests too deep is stopped, and the render fails with that reason', async () => {
    const plan = StepPlan.compile([row({ body: '($f := function($n){$n > 0 ? $n + $f($n - 1) : 0}; $f(100000))' })]);
    await assert.rejects(async () => renderStep(plan.stepsFor('Account/New')[0]!, stepInput(event, {}, [], []), settings.url[0]!),
      (e: unknown) => e instanceof RenderError && /^body: stopped: nested deeper than/.test(e.message));
    const loop = StepPlan.compile([row({ body: '(function($f){$f($f)})(function($g){$g($g)})' })]);
    const started = Date.now();
    await assert.rejects(async () => renderStep(loop.stepsFor('Account/New')[0]!, stepInput(event, {}, [], []), settings.url[0]!),
      (e: unknown) => e instanceof RenderError && /^body: stopped: ran longer than 250 ms/.test(e.message));
    assert.ok(Date.now() - started < 3000);
  });

  it('a plan: steps per type in order, "*" for the others, problems named by type, step and field', () => {
    const plan = StepPlan.compile([
      row({ step: 2, name: 'b', path: '/b' }), row({ step: 1, name: 'a', path: '/a' }),
      row({ event_type: '*', step: 1, body: '{"x": }' }), row({ event_type: '*', step: 2, headers: { 'X-A': '$$$(' }, path: '/{variables.}' }),
    ]);
    assert.deepEqual(plan.stepsFor('Account/New').map((s) => s.name), ['a', 'b']);
    assert.equal(plan.stepsFor('Account/Blocked').length, 2);
    assert.deepEqual(plan.problems.map((p) => `${p.eventType} ${p.step} ${p.field}`), ['* 1 body', '* 2 path', '* 2 headers.X-A']);
    assert.equal(StepPlan.compile([row({})]).stepsFor('Account/Blocked').length, 0, 'no "*": other types are skipped');
    assert.deepEqual(StepPlan.compile([row({ path: '/a b' })]).problems.map((p) => p.field), ['path']);
  });

  it('path templates: {…} parts, nested braces, unbalanced ones refused', () => {
    assert.deepEqual(parsePath('/s/{variables.id}/x{ {"a":1}.a }'), ['/s/', { text: 'variables.id' }, '/x', { text: ' {"a":1}.a ' }]);
    assert.throws(() => parsePath('/a/{x'), /not closed/);
    assert.throws(() => parsePath('/a/}'), /closes no/);
    assert.throws(() => parsePath('/a/{}'), /no expression/);
  });

  it('renders method, URL below the base, URL-encoded path values, headers, JSON and form bodies; env: secrets resolved', async () => {
    const plan = StepPlan.compile([
      row({ method: 'PUT', path: '/subscriber/{variables.id & "/x y"}', headers: { 'X-Key': 'env:ESPF_SECRET_K', 'X-Id': 'variables.i_account', 'X-None': 'variables.nope' },
        body: '{"imsi": variables.id, "auc": steps[0].body.auc_id, "by_name": step.auc.body.auc_id, "s": $secret("env:ESPF_SECRET_K")}' }),
      row({ event_type: 'Account/Blocked', content_type: 'application/x-www-form-urlencoded', body: '{"a": variables.i_account, "t": variables.tags, "n": null}' }),
    ]);
    const env = { ESPF_SECRET_K: 'sekret' };
    const earlier = [{ status: 200, headers: {}, body: { auc_id: 7 } }];
    const r = await renderStep(plan.stepsFor('Account/New')[0]!,
      stepInput(event, {}, [{ ...plan.stepsFor('Account/New')[0]!, name: 'auc' }, plan.stepsFor('Account/New')[0]!], earlier), settings.url[0]!, env);
    assert.equal(r.method, 'PUT');
    assert.equal(r.origin, 'https://hss.example.com');
    assert.equal(r.target, '/api/subscriber/imsi-1%2Fx%20y');
    assert.deepEqual(r.headers, { 'x-key': 'sekret', 'x-id': '42', 'content-type': 'application/json' });
    assert.deepEqual(JSON.parse(r.body!), { imsi: 'imsi-1', auc: 7, by_name: 7, s: 'sekret' });
    assert.deepEqual([...r.secrets].sort(), ['sekret', 'sekret']);
    const form = await renderStep(plan.stepsFor('Account/Blocked')[0]!, stepInput(event, {}, [], []), settings.url[0]!, env);
    assert.equal(form.body, 'a=42&t=a&t=b&n=');
    assert.equal(form.headers['content-type'], 'application/x-www-form-urlencoded');
    await assert.rejects(async () => renderStep(plan.stepsFor('Account/New')[0]!, stepInput(event, {}, [], []), settings.url[0]!, {}),
      (e: unknown) => e instanceof RenderError && /ESPF_SECRET_K, which is not set/.test(e.message));
    const notAllowed = StepPlan.compile([row({ body: '$secret("env:DATABASE_URL")' })]);
    await assert.rejects(async () => renderStep(notAllowed.stepsFor('Account/New')[0]!, stepInput(event, {}, [], []), settings.url[0]!, { DATABASE_URL: 'postgres://x' }),
      (e: unknown) => e instanceof RenderError && /does not read for rows/.test(e.message));
    assert.deepEqual(join('http://h:8/base?q=1', ''), { origin: 'http://h:8', target: '/base?q=1' });
    assert.deepEqual(join('http://h:8/', '/x?y=1'), { origin: 'http://h:8', target: '/x?y=1' });
  });

  it('success rules: exists_when, then success_when (default 2xx), then refuse_when; anything else is a retry', async () => {
    const [plain] = StepPlan.compile([row({})]).stepsFor('Account/New');
    const [ruled] = StepPlan.compile([row({ success_when: 'status = 200 and body != null', refuse_when: 'status = 403', exists_when: 'status = 400 and body.result = "Failed"' })]).stepsFor('Account/New');
    const [broken] = StepPlan.compile([row({ success_when: '$number("x")' })]).stepsFor('Account/New');
    const a = (status: number, text: string) => ({ status, headers: {}, body: parseBody(text) });
    const input = stepInput(event, {}, [], []);
    assert.deepEqual(await judge(plain!, a(204, ''), input), { kind: 'done', exists: false });
    assert.deepEqual(await judge(plain!, a(500, ''), input), { kind: 'retry', rule: null });
    assert.deepEqual(await judge(ruled!, a(200, 'null'), input), { kind: 'retry', rule: null });
    assert.deepEqual(await judge(ruled!, a(200, '{"ok":1}'), input), { kind: 'done', exists: false });
    assert.deepEqual(await judge(ruled!, a(400, '{"result":"Failed"}'), input), { kind: 'done', exists: true });
    assert.deepEqual(await judge(ruled!, a(403, 'no'), input), { kind: 'refused' });
    const v = await judge(broken!, a(200, ''), input);
    assert.equal(v.kind, 'retry');
    assert.match((v as { rule: string }).rule, /D3030/);
    assert.equal(parseBody('not json'), 'not json');
    assert.equal(parseBody(''), null);
  });
});

describe('request steps: what of an answer is read (pure)', () => {
  it('mayRead: false only for paths, literals and operators that do not name the field', () => {
    const reads = (text: string) => [Expression.compile(text).mayRead('body'), Expression.compile(text).mayRead('headers')];
    assert.deepEqual(reads('status = 200'), [false, false]);
    assert.deepEqual(reads('status in [200, 201] and steps[0].status = 200 ? true : false'), [false, false]);
    assert.deepEqual(reads('{"a": status, "b": variables.x}'), [false, false]);
    assert.deepEqual(reads('body.result = "exists"'), [true, false]);
    assert.deepEqual(reads('headers.`x-id` = "1"'), [false, true]);
    assert.deepEqual(reads('steps[0].body.id'), [true, false]); // conservative: the name is anywhere
    // Anything that may read the input without naming the field: every one is assumed to read it.
    for (const text of ['$.body', '$$.body', '$eval("body")', '$lookup($, "body")', '*.ok', '**.ok', '$keys()', '$string() = "x"', 'status ~> $string()',
      '$x := 1', 'steps^(status)', 'function($v){$v}(1)']) {
      assert.deepEqual(reads(text), [true, true], text);
    }
  });

  it('a step followed by another reads its whole answer; the last one what its rules may read', () => {
    const plan = StepPlan.compile([
      row({ step: 1, name: 'one' }),
      row({ step: 2 }),
      row({ event_type: 'Account/Blocked', step: 1, success_when: 'status = 204' }),
      row({ event_type: 'Account/Deleted', step: 1, success_when: 'status = 200 and body.ok', refuse_when: 'headers.x = "no"' }),
    ]);
    assert.deepEqual(plan.stepsFor('Account/New').map((s) => s.answer), [{ headers: true, body: true, text: true }, { headers: false, body: false, text: false }]);
    assert.deepEqual(plan.stepsFor('Account/Blocked')[0]!.answer, { headers: false, body: false, text: true });
    assert.deepEqual(plan.stepsFor('Account/Deleted')[0]!.answer, { headers: true, body: true, text: true });
  });

  it("an answer's headers as an object: as undici's parseHeaders makes it", async () => {
    // undici's own (internal) function, the one its newer handler interface applied to every answer.
    const { parseHeaders } = await import('undici/lib/core/util.js' as string) as { parseHeaders: (raw: Buffer[]) => Record<string, unknown> };
    const raw = ['Content-Type', 'application/json', 'Set-Cookie', 'a=1', 'set-cookie', 'b=2', 'X-Ünï', 'caf\u00e9', 'Retry-After', '5', 'SET-COOKIE', 'c=3']
      .map((t) => Buffer.from(t, 'latin1'));
    const ours = headersObject(raw);
    assert.deepEqual(ours, parseHeaders(raw));
    assert.deepEqual(ours['set-cookie'], ['a=1', 'b=2', 'c=3']);
    assert.deepEqual(Object.keys(headersObject([Buffer.from('__proto__'), Buffer.from('x')])), Object.keys(parseHeaders([Buffer.from('__proto__'), Buffer.from('x')])));
  });
});

describe('request steps: the record of a done step (pure)', () => {
  /** A pool whose writes commit at once, keeping the rows of each. */
  function pool() {
    const writes: Record<string, unknown>[][] = [];
    const db = {
      query: async (q: { format(f: unknown): { values: unknown[] } }) => {
        const { values } = q.format({ escapeIdentifier: (s: string) => s, formatValue: (value: unknown) => ({ placeholder: '?', value }) });
        writes.push(recordsOfCall(values));
        return [{ stale: [] }]; // espf.record_deliveries answers with the outcomes it dropped (none here)
      },
    } as unknown as Db;
    return { db, writes };
  }
  const silent = { warn() {}, info() {}, debug() {}, error() {} } as unknown as Logger;
  const it1: Item = {
    event: { i_event: 1, event_type: 'Account/New', variables: {}, source_i_event: null },
    handler: 'HSS', orderKey: 'a:1', iAccount: 1, commitLsn: null, committedAt: null, resumed: null,
  };
  const base = { attempts: 1, urlsDone: 0, firstAttemptAt: null, nextAttemptAt: null };
  const answer = { status: 200, headers: {}, body: { auc_id: 7 } };

  it('carries steps_done and the answers; an intermediate PENDING replaces a queued RETRY (a plain PENDING does not)', async () => {
    const { db, writes } = pool();
    const w = new ResultsWriter(db, 'main', silent);
    w.record(it1, { ...base, state: 'RETRY', stepsDone: 1, stepAnswers: [answer], error: 'step 2 PUT /subscriber/: 503' });
    w.record(it1, { ...base, state: 'PENDING', stepsDone: 1, stepAnswers: [answer] });
    const p = w.record(it1, { ...base, attempts: 2, state: 'PENDING', stepsDone: 2, stepAnswers: [answer, answer], intermediate: true });
    await p;
    assert.equal(writes.length, 1);
    const [row] = writes[0]!;
    assert.equal(row!.state, 'PENDING');
    assert.equal(row!.steps_done, 2);
    assert.deepEqual(row!.step_answers, [answer, answer]);
    assert.equal(typeof row!.last_attempt_at, 'number', 'an intermediate record is an attempt');
    w.record(it1, { ...base, state: 'SKIPPED' });
    await w.drain();
    assert.equal(writes[1]![0]!.steps_done, 0);
    assert.equal(writes[1]![0]!.step_answers, null);
    assert.equal(typeof writes[1]![0]!.finished_at, 'number', 'SKIPPED is final');
  });
});
