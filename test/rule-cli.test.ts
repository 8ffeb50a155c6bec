import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from '@databases/pg';
import { createTestDatabase, type TestDatabase } from './support/database.ts';
import { runEspf, type CliRun } from './support/child.ts';

/** `espf rule list | show | check` (src/cli/rule-command.ts) as a real child process. */
describe('espf rule', () => {
  let t: TestDatabase;
  let home: string;
  const espf = (...args: string[]) => runEspf(args, { DATABASE_URL: t.url, ESPF_HOME: home });
  const show = (r: CliRun) => `exit ${r.code}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;
  function refused(r: CliRun, reason: RegExp, code = 1): void {
    assert.equal(r.code, code, show(r));
    assert.match(r.stderr, /^[^\n]+\n$/, `one line on stderr:\n${show(r)}`);
    assert.match(r.stderr, reason, show(r));
  }

  before(async () => {
    t = await createTestDatabase();
    home = await mkdtemp(path.join(os.tmpdir(), 'espf-home-'));
    await t.db.query(sql`CREATE SCHEMA acme`);
    await t.db.query(sql`CREATE TABLE acme.line (msisdn text PRIMARY KEY, plan text, note text)`);
    await t.db.query(sql`INSERT INTO espf.event_types (name, enabled) VALUES ('Line/PlanChanged', true)`);
    await t.db.query(sql`INSERT INTO espf.event_rules (name, event_type, source, operations, watch, condition, variables)
      VALUES ('line plan', 'Line/PlanChanged', 'acme.line', '{UPDATE}', '{plan}', 'OLD.plan IS DISTINCT FROM NEW.plan',
              'jsonb_build_object(''msisdn'', NEW.msisdn, ''plan'', NEW.plan, ''note'', NEW.note)')`);
    await t.db.query(sql`UPDATE espf.event_rules SET condition = 'NOT OLD.blocked AND NEW.blocked AND NEW.role <> ''x''' WHERE name = 'Account/Blocked'`);
  });
  after(async () => {
    await t.drop();
    await rm(home, { recursive: true, force: true });
  });

  it('list: name, type, table, operations, enabled, built-in / changed / local', async () => {
    const r = await espf('rule', 'list');
    assert.equal(r.code, 0, show(r));
    const lines = r.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^NAME\s+TYPE\s+TABLE\s+OPERATIONS\s+ENABLED\s+ORIGIN$/);
    const row = (name: string) => lines.find((l) => l.startsWith(`${name} `))?.split(/\s{2,}/);
    assert.deepEqual(row('line plan'), ['line plan', 'Line/PlanChanged', 'acme.line', 'UPDATE', 'yes', 'local']);
    assert.deepEqual(row('Account/Blocked'), ['Account/Blocked', 'Account/Blocked', 'billing.account', 'UPDATE', 'no', 'built-in, changed']);
    assert.deepEqual(row('Account/SIMCardAssignment:update'),
      ['Account/SIMCardAssignment:update', 'Account/SIMCardAssignment', 'billing.sim_card', 'UPDATE', 'no', 'built-in']);
  });

  it('espf migrate keeps the built-in rule a DBA changed and says so', async () => {
    const r = await espf('migrate');
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /^kept built-in rule Account\/Blocked as changed by a DBA \(espf rule show Account\/Blocked\)$/m);
    const [row] = await t.db.query(sql`SELECT condition FROM espf.event_rules WHERE name = 'Account/Blocked'`);
    assert.equal(row.condition, "NOT OLD.blocked AND NEW.blocked AND NEW.role <> 'x'");
  });

  it('show: the rule and the trigger SQL it compiles to', async () => {
    const r = await espf('rule', 'show', 'line plan');
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /^name:\s+line plan$/m);
    assert.match(r.stdout, /^source:\s+acme\.line$/m);
    assert.match(r.stdout, /CREATE OR REPLACE FUNCTION espf\.rule_line_plan_[0-9a-f]{8}\(\) RETURNS trigger/);
    assert.match(r.stdout, /AFTER UPDATE OF plan ON acme\.line FOR EACH ROW\n\s+WHEN \(OLD\.plan IS DISTINCT FROM NEW\.plan\)/);
  });

  it('show: an unknown rule or a missing name is refused in one line', async () => {
    refused(await espf('rule', 'show', 'nope'), /unknown rule 'nope' \(espf rule list shows the rules\)/);
    refused(await espf('rule', 'show'), /espf rule show: missing required argument 'name'/, 2);
    refused(await espf('rule', 'frobnicate'), /espf rule: unknown command 'frobnicate'/, 2);
    refused(await espf('rule', 'list', 'extra'), /espf rule list: too many arguments/, 2);
  });

  it('check: every rule compiles; after a column a rule uses is dropped, exit 1 naming it', async () => {
    const ok = await espf('rule', 'check');
    assert.equal(ok.code, 0, show(ok));
    assert.match(ok.stdout, /^\d+ rules compile\n$/);
    await t.db.query(sql`ALTER TABLE acme.line DROP COLUMN note`);
    const r = await espf('rule', 'check');
    assert.equal(r.code, 1, show(r));
    assert.match(r.stdout, /^espf\.event_rules: rule "line plan": variables: column new\.note does not exist$/m);
    assert.match(r.stderr, /^espf: 1 of \d+ rules do not compile: line plan\n$/);
  });
});
