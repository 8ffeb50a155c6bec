import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from '@databases/pg';
import { ROOT } from '../src/paths.ts';
import { runEspf } from './support/child.ts';
import type { TestDatabase } from './support/database.ts';
import { deliveryFixture } from './support/fixture.ts';
import { eventually, type TestReceiver } from './support/receiver.ts';

/**
 * docs/own-schema.md, exactly as written: its ```sql blocks run in order, its
 * ```sh lines run as `espf` commands (`espf run` as a child process), with a real
 * receiver in place of http://127.0.0.1:8080/events; the receiver must get the
 * events of its ```text block, in that order per account.
 */
describe('docs/own-schema.md walk-through', function () {
  this.timeout(120_000);
  // The document configures EventSender and starts espf run: the fixture gives the database and the receiver.
  const f = deliveryFixture({ seed: false, sender: false });
  let t: TestDatabase;
  let rx: TestReceiver;
  let home: string;

  before(async () => {
    ({ t, rx } = f);
    home = await mkdtemp(path.join(os.tmpdir(), 'espf-home-'));
  });
  after(async () => {
    await rm(home, { recursive: true, force: true });
  });

  it('the receiver gets the documented events through espf run', async () => {
    const doc = readFileSync(path.join(ROOT, 'docs', 'own-schema.md'), 'utf8');
    const blocks = [...doc.matchAll(/^```(sql|sh|text)\n([\s\S]*?)^```$/gm)].map((m) => ({ kind: m[1]!, body: m[2]! }));
    assert.ok(blocks.filter((b) => b.kind === 'sql').length >= 5, 'the document has its SQL blocks');
    let expected: string[] = [];
    for (const b of blocks) {
      if (b.kind === 'sql') {
        await t.db.query(sql.__dangerous__rawValue(b.body.replaceAll('http://127.0.0.1:8080/events', rx.url)));
      } else if (b.kind === 'sh') {
        for (const line of b.body.split('\n').map((l) => l.trim()).filter(Boolean)) {
          const m = /^npx espf (.+)$/.exec(line);
          assert.ok(m, `a shell line of the document is an espf command: ${line}`);
          const args = m[1]!.split(/\s+/);
          if (args[0] === 'run') {
            const run = f.spawn({ env: { ESPF_HOME: home } });
            await run.streaming();
          } else {
            const r = await runEspf(args, { DATABASE_URL: t.url, ESPF_HOME: home });
            assert.equal(r.code, 0, `${line}: ${r.stderr}`);
          }
        }
      } else {
        expected = b.body.trim().split('\n');
      }
    }
    assert.equal(expected.length, 10, 'the document lists what the receiver gets');
    await rx.waitFor(() => rx.received.length >= expected.length, 30_000, 'the documented events');
    const perAccount = (lines: { type: string; vars: Record<string, unknown> }[]) => {
      const m = new Map<unknown, string[]>();
      for (const l of lines) m.set(l.vars.i_account, [...(m.get(l.vars.i_account) ?? []), `${l.type} ${JSON.stringify(l.vars, Object.keys(l.vars).sort())}`]);
      return m;
    };
    const want = perAccount(expected.map((l) => {
      const i = l.indexOf(' ');
      return { type: l.slice(0, i), vars: JSON.parse(l.slice(i + 1)) };
    }));
    const got = perAccount(rx.received.map((r) => {
      const { i_event, event_time, source_i_event, ...vars } = r.json.variables;
      assert.equal(typeof i_event, 'number');
      assert.equal(typeof event_time, 'string');
      // A dispatched event's source (Owner/OnHold), which the document leaves out.
      if (r.json.event_type === 'Account/Status/Suspend') assert.equal(typeof source_i_event, 'number');
      else assert.equal(source_i_event, undefined);
      return { type: r.json.event_type, vars };
    }));
    assert.deepEqual(got, want);
    assert.equal(rx.received.length, expected.length, 'nothing else (the second barring made no event)');
    await eventually(async () => (await t.db.query(sql`SELECT count(*)::int AS n FROM espf.account_provisioning_statuses
      WHERE status = 'OK' AND i_account IN (353871000001, 353871000002)`))[0].n === 2, 15_000, 'both accounts OK in espf.account_provisioning_statuses');
  });
});
