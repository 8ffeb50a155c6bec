import assert from 'node:assert/strict';
import { sql, type SQLQuery } from '@databases/pg';
import { migrate } from '../src/migrate/migrate.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';
import { eventually, TestReceiver } from './support/receiver.ts';
import { configureEventSender, seedCustomer, startSender } from './support/sender.ts';

/**
 * espf.event_rules (sql/025_event_rules.sql): a rule row compiles into its
 * trigger in the same transaction; a rule that does not compile is refused with
 * one message naming the rule and the problem, and nothing changes; only the
 * espf owner and espf_admin write rules.
 */
describe('event rules (espf.event_rules)', () => {
  let t: TestDatabase;
  let ids: { i_product: number; i_customer: number };
  const q = (query: SQLQuery) => t.db.query(query);

  before(async () => {
    t = await createTestDatabase();
    ids = await seedCustomer(t.db);
    await q(sql`INSERT INTO espf.event_types (name, enabled) VALUES ('Test/RoleChanged', true), ('Test/Off', false)`);
  });
  after(async () => { await t.drop(); });

  /** Everything a rule write could change: rules, triggers and functions espf made. */
  async function snapshot(): Promise<unknown> {
    return {
      rules: await q(sql`SELECT name, condition, variables FROM espf.event_rules ORDER BY name`),
      triggers: await q(sql`SELECT tgrelid::regclass::text AS t, tgname, tgenabled FROM pg_trigger WHERE tgname LIKE 'espf\\_%' ORDER BY 1, 2`),
      functions: await q(sql`SELECT proname, md5(prosrc) AS src FROM pg_proc WHERE pronamespace = 'espf'::regnamespace AND proname LIKE 'rule\\_%' ORDER BY 1`),
    };
  }

  interface RuleRow {
    name?: string; event_type?: string; source?: string; operations?: string[]; watch?: string[] | null;
    condition?: string | null; variables?: string; i_env?: string;
  }
  const rule = (r: RuleRow) => ({
    name: 'test role', event_type: 'Test/RoleChanged', source: 'billing.account', operations: ['UPDATE'], watch: ['role'] as string[] | null,
    condition: 'OLD.role IS DISTINCT FROM NEW.role' as string | null,
    variables: `jsonb_build_object('i_account', NEW.i_account, 'role', NEW.role, 'prev_role', OLD.role)`, i_env: 'NEW.i_env', ...r,
  });
  const insertRule = (r: RuleRow) => {
    const x = rule(r);
    return q(sql`INSERT INTO espf.event_rules (name, event_type, source, operations, watch, condition, variables, i_env)
      VALUES (${x.name}, ${x.event_type}, ${x.source}::regclass, ${x.operations}::text[], ${x.watch}::text[], ${x.condition}, ${x.variables}, ${x.i_env})`);
  };

  async function newAccount(id: string): Promise<number> {
    const [a] = await q(sql`INSERT INTO billing.account (id, i_customer, i_product, i_env) VALUES (${id}, ${ids.i_customer}, ${ids.i_product}, 4) RETURNING i_account`);
    return a.i_account;
  }
  async function eventsAfter(m: number): Promise<{ event_type: string; variables: Record<string, unknown> }[]> {
    return q(sql`SELECT event_type, variables FROM espf.events WHERE i_event > ${m} ORDER BY i_event`);
  }
  async function maxEvent(): Promise<number> {
    const [r] = await q(sql`SELECT coalesce(max(i_event), 0)::bigint AS m FROM espf.events`);
    return Number(r.m);
  }

  it('a rule row becomes its trigger at once; the event carries its variables plus i_event, i_env, event_time', async () => {
    await insertRule({});
    const [s] = await q(sql`SELECT compiled, active, builtin, changed FROM espf.event_rule_status WHERE name = 'test role'`);
    assert.deepEqual(s, { compiled: true, active: true, builtin: false, changed: false });
    const a = await newAccount('rule-1');
    const m = await maxEvent();
    await q(sql`UPDATE billing.account SET role = 'fixed' WHERE i_account = ${a}`);
    await q(sql`UPDATE billing.account SET role = 'fixed', balance = 5 WHERE i_account = ${a}`);
    const ev = await eventsAfter(m);
    assert.equal(ev.length, 1, JSON.stringify(ev));
    const { i_event, event_time, ...rest } = ev[0]!.variables;
    assert.equal(typeof i_event, 'number');
    assert.match(String(event_time), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
    assert.deepEqual(rest, { i_account: a, role: 'fixed', prev_role: 'mobile', i_env: 4 });
  });

  it('updating the row replaces the trigger; deleting it drops trigger and function', async () => {
    await q(sql`UPDATE espf.event_rules SET condition = ${"NEW.role = 'data'"} WHERE name = 'test role'`);
    const a = await newAccount('rule-2');
    let m = await maxEvent();
    await q(sql`UPDATE billing.account SET role = 'fixed' WHERE i_account = ${a}`);
    assert.deepEqual(await eventsAfter(m), []);
    await q(sql`UPDATE billing.account SET role = 'data' WHERE i_account = ${a}`);
    assert.equal((await eventsAfter(m)).length, 1);
    await q(sql`DELETE FROM espf.event_rules WHERE name = 'test role'`);
    const [left] = await q(sql`SELECT count(*)::int AS n FROM pg_trigger WHERE tgname = espf.rule_trigger_name('test role')`);
    assert.equal(left.n, 0);
    const [fn] = await q(sql`SELECT to_regproc('espf.' || espf.rule_function_name('test role')) AS f`);
    assert.equal(fn.f, null);
    m = await maxEvent();
    await q(sql`UPDATE billing.account SET role = 'mobile' WHERE i_account = ${a}`);
    assert.deepEqual(await eventsAfter(m), []);
  });

  it('a rule of a disabled type has no trigger until the type is enabled (espf type enable), and none after it is disabled', async () => {
    await insertRule({ name: 'off rule', event_type: 'Test/Off' });
    const state = async () => (await q(sql`SELECT compiled, active FROM espf.event_rule_status WHERE name = 'off rule'`))[0];
    assert.deepEqual(await state(), { compiled: false, active: false });
    await q(sql`UPDATE espf.event_types SET enabled = true WHERE name = 'Test/Off'`);
    assert.deepEqual(await state(), { compiled: true, active: true });
    await q(sql`UPDATE espf.event_types SET enabled = false WHERE name = 'Test/Off'`);
    assert.deepEqual(await state(), { compiled: false, active: false });
    await q(sql`DELETE FROM espf.event_rules WHERE name = 'off rule'`);
  });

  describe('refusals: one message naming the rule and the problem, and nothing changed', () => {
    const cases: { what: string; row: RuleRow; code: string; msg: RegExp }[] = [
      { what: 'unknown column in variables', row: { variables: `jsonb_build_object('x', NEW.no_such_column)` }, code: '42703', msg: /variables: column new\.no_such_column does not exist/ },
      { what: 'unknown column in the condition', row: { condition: 'OLD.nope <> NEW.nope' }, code: '42703', msg: /condition: column old\.nope does not exist/ },
      { what: 'condition not boolean', row: { condition: 'NEW.balance' }, code: '42804', msg: /condition: must be boolean, is numeric/ },
      { what: 'variables not jsonb', row: { variables: `'{"a":1}'::json` }, code: '42804', msg: /variables: must be jsonb .*, is json$/ },
      { what: 'variables a plain text', row: { variables: 'NEW.id' }, code: '42804', msg: /variables: must be jsonb .*, is text$/ },
      { what: 'OLD in an INSERT rule', row: { operations: ['INSERT'], watch: null, condition: null, variables: `jsonb_build_object('id', OLD.id)` }, code: '42P01', msg: /variables: OLD in a rule for INSERT/ },
      { what: 'OLD in the condition of an INSERT OR UPDATE rule', row: { operations: ['INSERT', 'UPDATE'], watch: null }, code: '42P01', msg: /condition: OLD in a rule for INSERT/ },
      { what: 'NEW in a DELETE rule', row: { operations: ['DELETE'], watch: null, condition: null }, code: '42P01', msg: /variables: NEW in a rule for DELETE/ },
      { what: 'empty operations', row: { operations: [] }, code: '23514', msg: /operations: empty/ },
      { what: 'unknown operation', row: { operations: ['UPSERT'] }, code: '23514', msg: /operations: unknown operation 'UPSERT'/ },
      { what: 'TRUNCATE', row: { operations: ['TRUNCATE'] }, code: '23514', msg: /operations: unknown operation 'TRUNCATE'/ },
      { what: 'a watch column that does not exist', row: { watch: ['role', 'colour'] }, code: '42703', msg: /watch: column 'colour' of billing\.account does not exist/ },
      { what: 'a type not in espf.event_types', row: { event_type: 'Test/NoSuchType' }, code: '23503', msg: /event_type: unknown event type 'Test\/NoSuchType'/ },
      { what: 'a view as source', row: { source: 'espf.matrix' }, code: '23514', msg: /source: espf\.matrix is not a table/ },
      { what: 'a second statement smuggled in', row: { condition: 'true); DROP TABLE billing.product; SELECT (true' }, code: '23514', msg: /condition: unbalanced parentheses|condition: one expression only/ },
      { what: 'a comment', row: { variables: `jsonb_build_object('a', 1) -- )` }, code: '23514', msg: /variables: comments are not allowed/ },
      { what: 'dollar quoting', row: { variables: `jsonb_build_object('a', $x$b$x$)` }, code: '23514', msg: /variables: '\$'/ },
      { what: 'an i_env that is not an integer', row: { i_env: 'NEW.id' }, code: '42804', msg: /i_env: must be an integer, is text/ },
    ];
    for (const c of cases) {
      it(c.what, async () => {
        const before = await snapshot();
        await assert.rejects(insertRule({ name: `bad: ${c.what}`, ...c.row }), (err: { code?: string; message?: string }) => {
          assert.equal(err.code, c.code, String(err.message));
          assert.match(String(err.message), new RegExp(`^espf\\.event_rules: rule "bad: ${c.what.replace(/[()]/g, '\\$&')}": `));
          assert.match(String(err.message), c.msg);
          assert.doesNotMatch(String(err.message), /\n/);
          return true;
        });
        assert.deepEqual(await snapshot(), before);
      });
    }

    it('an update that breaks a rule is refused and leaves the old rule and trigger working', async () => {
      await insertRule({ name: 'kept rule' });
      const before = await snapshot();
      await assert.rejects(q(sql`UPDATE espf.event_rules SET variables = 'NEW.id' WHERE name = 'kept rule'`),
        (err: { message?: string }) => /^espf\.event_rules: rule "kept rule": variables: must be jsonb/.test(String(err.message)));
      assert.deepEqual(await snapshot(), before);
      const a = await newAccount('rule-3');
      const m = await maxEvent();
      await q(sql`UPDATE billing.account SET role = 'fixed' WHERE i_account = ${a}`);
      assert.equal((await eventsAfter(m)).length, 1);
      await q(sql`DELETE FROM espf.event_rules WHERE name = 'kept rule'`);
    });

    it('a rule or type name cannot smuggle SQL into the compiled function', async () => {
      await q(sql`INSERT INTO espf.event_types (name, enabled) VALUES (${'Test/$espf_rule$; DROP TABLE billing.product; --'}, true)`);
      const before = await snapshot();
      await assert.rejects(insertRule({ name: 'dollar type', event_type: 'Test/$espf_rule$; DROP TABLE billing.product; --' }),
        (err: { message?: string }) => /event_type: a type name with '\$' or a line break cannot be compiled/.test(String(err.message)));
      assert.deepEqual(await snapshot(), before);
      const evil = 'evil\nDROP TABLE billing.product; --';
      await insertRule({ name: evil });
      const [t1] = await q(sql`SELECT to_regclass('billing.product') IS NOT NULL AS ok`);
      assert.equal(t1.ok, true, 'billing.product still exists');
      await q(sql`DELETE FROM espf.event_rules WHERE name = ${evil}`);
      await q(sql`DELETE FROM espf.event_types WHERE name LIKE 'Test/$%'`);
    });

    it('an unknown table is refused by PostgreSQL when it reads the regclass (42P01), nothing changed', async () => {
      const before = await snapshot();
      await assert.rejects(insertRule({ name: 'no table', source: 'billing.no_such_table' }),
        (err: { code?: string; message?: string }) => err.code === '42P01' && /billing\.no_such_table/.test(String(err.message)));
      assert.deepEqual(await snapshot(), before);
    });
  });

  describe('who may write rules', () => {
    for (const role of ['espf_sender', 'espf_reporting', 'espf_capture']) {
      it(`${role} may not`, async () => {
        await assert.rejects(t.db.tx(async (tx) => {
          await tx.query(sql`SET LOCAL ROLE ${sql.ident(role)}`);
          await tx.query(sql`INSERT INTO espf.event_rules (name, event_type, source, operations, variables)
            VALUES ('sneaky', 'Test/RoleChanged', 'billing.account', '{INSERT}', 'jsonb_build_object()')`);
        }), (err: { code?: string }) => err.code === '42501');
        if (role !== 'espf_capture') {
          await assert.rejects(t.db.tx(async (tx) => {
            await tx.query(sql`SET LOCAL ROLE ${sql.ident(role)}`);
            await tx.query(sql`DELETE FROM espf.event_rules`);
          }), (err: { code?: string }) => err.code === '42501');
        }
      });
    }

    it('espf_admin may: its rule is compiled with the espf owner\'s rights', async () => {
      await t.db.tx(async (tx) => {
        await tx.query(sql`SET LOCAL ROLE espf_admin`);
        await tx.query(sql`INSERT INTO espf.event_rules (name, event_type, source, operations, watch, condition, variables, i_env)
          VALUES ('admin rule', 'Test/RoleChanged', 'billing.account', '{UPDATE}', '{role}', 'OLD.role IS DISTINCT FROM NEW.role',
                  'jsonb_build_object(''i_account'', NEW.i_account)', 'NEW.i_env')`);
      });
      const [s] = await q(sql`SELECT compiled, active FROM espf.event_rule_status WHERE name = 'admin rule'`);
      assert.deepEqual(s, { compiled: true, active: true });
      await q(sql`DELETE FROM espf.event_rules WHERE name = 'admin rule'`);
    });
  });

  describe('built-in rules and espf migrate', () => {
    it('every built-in type has built-in rules, unchanged after migrate', async () => {
      const rows = await q(sql`SELECT t.name, count(r.name)::int AS n FROM espf.event_types t
        LEFT JOIN espf.event_rules r ON r.event_type = t.name AND r.builtin WHERE t.origin IN ('trigger', 'rule') AND t.name NOT LIKE 'Test/%' GROUP BY 1 ORDER BY 1`);
      assert.ok(rows.length >= 27, `${rows.length} types`);
      for (const r of rows) assert.ok(r.n >= 1, `${r.name} has no built-in rule`);
      const [c] = await q(sql`SELECT count(*) FILTER (WHERE changed)::int AS changed FROM espf.event_rule_status`);
      assert.equal(c.changed, 0);
    });

    it('keeps a built-in rule a DBA changed (and says so), adds back a missing one', async () => {
      await q(sql`UPDATE espf.event_rules SET condition = 'NOT OLD.blocked AND NEW.blocked AND NEW.role <> ''test''' WHERE name = 'Account/Blocked'`);
      await q(sql`DELETE FROM espf.event_rules WHERE name = 'Customer/New'`);
      const r = await migrate(t.db);
      assert.deepEqual(r.keptRules, ['Account/Blocked']);
      const [blocked] = await q(sql`SELECT condition, builtin FROM espf.event_rules WHERE name = 'Account/Blocked'`);
      assert.deepEqual(blocked, { condition: "NOT OLD.blocked AND NEW.blocked AND NEW.role <> 'test'", builtin: true });
      const [added] = await q(sql`SELECT builtin, variables FROM espf.event_rules WHERE name = 'Customer/New'`);
      assert.equal(added.builtin, true);
      const [st] = await q(sql`SELECT changed FROM espf.event_rule_status WHERE name = 'Account/Blocked'`);
      assert.equal(st.changed, true);
      // Put back by hand: no longer changed, nothing kept.
      await q(sql`UPDATE espf.event_rules r SET condition = b.condition FROM espf.builtin_event_rules b WHERE r.name = b.name AND r.name = 'Account/Blocked'`);
      assert.deepEqual((await migrate(t.db)).keptRules, []);
    });

    it('a migrate with nothing to change takes no lock on the billing tables', async () => {
      // A billing write transaction holding a row lock on billing.account (ROW EXCLUSIVE on the table) ...
      await t.db.tx(async (tx) => {
        await tx.query(sql`UPDATE billing.account SET role = role WHERE i_account = (SELECT min(i_account) FROM billing.account)`);
        // ... does not stop a migrate from another connection (it would wait for SHARE ROW EXCLUSIVE otherwise).
        const r = await migrate(t.db);
        assert.deepEqual(r.applied, []);
      });
    });
  });

  describe('live edits while espf run streams', () => {
    // Not test/support/fixture.ts: it streams the database of the rule tests above (their types, helpers and rules).
    let rx: TestReceiver;
    let s: Awaited<ReturnType<typeof startSender>>;
    before(async () => {
      rx = await new TestReceiver().listen();
      await configureEventSender(t.db, rx.url, ['Test/RoleChanged']);
      s = await startSender(t.db, t.url);
    });
    after(async () => { await s.stop(); await rx.close(); });

    it('the next event follows the edited rule; none after the rule is dropped', async () => {
      await insertRule({ name: 'live rule' });
      const a = await newAccount('live-1');
      await q(sql`UPDATE billing.account SET role = 'one' WHERE i_account = ${a}`);
      await rx.waitFor(() => rx.received.length >= 1);
      assert.deepEqual(rx.received[0]!.json.variables.role, 'one');
      await q(sql`UPDATE espf.event_rules SET variables = ${`jsonb_build_object('i_account', NEW.i_account, 'new_role', upper(NEW.role))`} WHERE name = 'live rule'`);
      await q(sql`UPDATE billing.account SET role = 'two' WHERE i_account = ${a}`);
      await rx.waitFor(() => rx.received.length >= 2);
      const v = rx.received[1]!.json.variables;
      assert.equal(v.new_role, 'TWO');
      assert.equal(v.role, undefined);
      await q(sql`DELETE FROM espf.event_rules WHERE name = 'live rule'`);
      await q(sql`UPDATE billing.account SET role = 'three' WHERE i_account = ${a}`);
      // A later event of another rule proves the stream moved past the update.
      await insertRule({ name: 'live rule 2', condition: `NEW.role = 'four'` });
      await q(sql`UPDATE billing.account SET role = 'four' WHERE i_account = ${a}`);
      await rx.waitFor(() => rx.received.length >= 3);
      await eventually(async () => (await q(sql`SELECT count(*)::int AS n FROM espf.event_deliveries WHERE state = 'DELIVERED'`))[0].n >= 3);
      assert.deepEqual(rx.received.map((r) => r.json.variables.role ?? r.json.variables.new_role), ['one', 'TWO', 'four']);
    });
  });
});
