// A PostgreSQL failover under a running `espf run`: a primary and a physical
// standby, DATABASE_URL listing both with target_session_attrs=read-write,
// accounts created all along; mid-stream the primary stops and the standby is
// promoted. espf must keep running, find the new primary by itself and deliver
// every event the new primary holds.
//   PostgreSQL 18 (embedded binaries): the slot is a failover slot, synced to the
//   standby; espf goes on from it.
//   PostgreSQL 15 (the machine's, if installed): no failover slots; the slot is
//   missing after the promotion and espf catches up from the outbox.
import assert from 'node:assert/strict';
import { sql } from '@databases/pg';
import { connect, type Db } from '../src/db/connect.ts';
import { migrate } from '../src/migrate/migrate.ts';
import { EspfProcess } from './support/child.ts';
import { eventually, TestReceiver } from './support/receiver.ts';
import { configureEventSender, seedCustomer } from './support/sender.ts';
import { pg15BinDir, startPrimaryAndStandby, type PrimaryStandby } from './support/standby.ts';
import { AccountWriter, assertAccountOrder } from './support/writer.ts';

const TYPES = ['Account/New', 'Account/ID/Changed'];

function variants(): { title: string; binDir?: string; skip?: string }[] {
  const pg15 = pg15BinDir();
  return [
    { title: 'PostgreSQL 18 (embedded): the failover slot is synced to the standby and espf goes on from it' },
    { title: 'PostgreSQL 15 (the machine\'s): no failover slot; espf catches up from the outbox',
      binDir: pg15, skip: !pg15 ? 'PostgreSQL 15 is not installed at /usr/lib/postgresql/15 (apt-get install postgresql-15)' : undefined },
  ];
}

describe('failover: the standby is promoted while espf run streams', function () {
  this.timeout(120_000);
  for (const v of variants()) {
    describe(v.title, function () {
      // Not test/support/fixture.ts: the database lives on a primary and standby pair of its own (test/support/standby.ts).
      let pair: PrimaryStandby | undefined;
      let rx: TestReceiver;
      let espf: EspfProcess | undefined;
      let db: Db | undefined;
      let ids: { i_product: number; i_customer: number };
      before(async function () {
        if (v.skip) {
          process.stderr.write(`# SKIPPED failover on PostgreSQL 15: ${v.skip}\n`);
          this.skip();
        }
        rx = await new TestReceiver().listen();
        pair = await startPrimaryAndStandby({
          name: v.binDir ? 'failover-15' : 'failover-18', binDir: v.binDir, database: 'billing',
          prepare: async (pdb) => {
            await migrate(pdb);
            await configureEventSender(pdb, rx.url, TYPES);
            ids = await seedCustomer(pdb);
          },
        });
        db = connect({ connectionString: pair.url, poolSize: 2 });
      });
      after(async () => {
        await espf?.stop();
        await db?.dispose();
        await rx?.close();
        await pair?.stop();
      });

      it('every event is delivered, the process keeps running, no manual step', async () => {
        const p = pair!;
        espf = new EspfProcess(p.url, 'main');
        await espf.streaming();
        if (p.versionNum >= 170000) await p.slotSynced('espf_main');

        const writer = new AccountWriter(db!, ids, 'fo');
        writer.start();
        await rx.waitFor(() => rx.received.length >= 100, 30_000, '100 deliveries before the failover');

        await p.stopPrimary();
        await p.promote();
        const atFailover = rx.received.length;
        await rx.waitFor(() => rx.received.length >= atFailover + 100, 30_000, '100 deliveries after the failover');
        await writer.stop();
        assert.equal(espf.exitCode, undefined, `espf run exited:\n${espf.output}`);

        // Every event the new primary holds reaches the receiver and is DELIVERED.
        const newPrimary = connect({ connectionString: p.standbyUrl, poolSize: 1 });
        try {
          const events: { i_event: number }[] = await newPrimary.query(sql`SELECT i_event FROM espf.events WHERE event_type = ANY(${TYPES}::text[])`);
          assert.ok(events.length >= writer.committed, `the new primary holds ${events.length} events, the writer committed ${writer.committed}`);
          const want = new Set(events.map((e) => Number(e.i_event)));
          const got = () => new Set(rx.received.map((r) => Number(r.json.variables.i_event)));
          await rx.waitFor(() => { const g = got(); return [...want].every((i) => g.has(i)); }, 60_000, `all ${want.size} events at the receiver`)
            .catch(async (err: Error) => {
              const slots = await newPrimary.query(sql`SELECT slot_name, (to_jsonb(s) ->> 'synced') AS synced, confirmed_flush_lsn::text, (to_jsonb(s) ->> 'invalidation_reason') AS invalid FROM pg_replication_slots s`);
              throw new Error(`${err.message}; slots on the new primary ${JSON.stringify(slots)}; missing ${[...want].filter((i) => !got().has(i)).slice(0, 20).join(', ')}…; espf run said:\n${espf!.output.split('\n').slice(-40).join('\n')}`);
            });
          await eventually(async () => {
            const [r] = await newPrimary.query(sql`
              SELECT count(*)::int AS n FROM espf.events e
               WHERE event_type = ANY(${TYPES}::text[])
                 AND NOT EXISTS (SELECT FROM espf.event_deliveries d WHERE d.i_event = e.i_event AND d.handler = 'EventSender' AND d.state = 'DELIVERED')`);
            return r.n === 0;
          }, 20_000, 'every event DELIVERED in espf.event_deliveries on the new primary');
          const duplicates = rx.received.length - got().size;
          process.stderr.write(`# failover ${p.versionNum}: ${want.size} events, ${writer.failures} failed writes during the failover, ${duplicates} sent twice\n`);
        } finally {
          await newPrimary.dispose();
        }
        if (process.env.ESPF_TEST_SHOW_OUTPUT) process.stderr.write(espf.output);
        assert.equal(espf.exitCode, undefined, 'espf run is still running');
        assertAccountOrder(rx.received);
        const port = /\/metrics, the status API and \/console\/ on [^:]+:(\d+)/.exec(espf.output)?.[1];
        assert.ok(port, `espf run said where /metrics is:\n${espf.output}`);
        const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        if (p.versionNum >= 170000) {
          assert.doesNotMatch(espf.output, /catch(ing)?[ -]up/i, 'the synced slot was used: no catch-up');
          assert.match(metrics, /espf_slot_recreated_total\{slot="espf_main"\} 0\b/);
        } else {
          // One line says it: the slot was missing on the new primary, and how many events were caught up.
          const standbyHost = `127.0.0.1:${p.standby.port}`;
          assert.match(espf.output, new RegExp(`replication slot espf_main was missing on ${standbyHost.replace(/\./g, '\\.')}: made it anew and caught up \\d+ events? from the outbox`),
            'the missing slot was reported and caught up from the outbox');
          assert.match(metrics, /espf_slot_recreated_total\{slot="espf_main"\} 1\b/);
          assert.match(metrics, /espf_caught_up_events_total\{handler="EventSender"\} \d+/);
        }
      });
    });
  }
});
