// Pins what src/stream/library.ts relies on in pg-logical-replication beyond
// its typed API: an upgrade that changes it fails here first.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { LogicalReplicationService } from 'pg-logical-replication';
import { acknowledgeUpTo, OutboxPgoutput } from '../../src/stream/library.ts';
import { parseLsn } from '../../src/stream/lsn.ts';

type Internals = { _messageQueue: unknown[]; _processing: boolean; _stop: boolean; _connection: unknown; _processQueue(): void };

describe('unit: pg-logical-replication internals espf relies on', function () {
  it('is the version the wrapper was checked against', () => {
    const require = createRequire(import.meta.url);
    const version = (require('pg-logical-replication/package.json') as { version: string }).version;
    assert.match(version, /^2\.5\./, 'check src/stream/library.ts against the new version, then update this pin');
  });

  // src/stream/replication.ts answers a keepalive only after a setImmediate, when no
  // handler it returned a promise from is pending: that holds only if the library
  // hands on queued messages whose handler did not wait within microtasks, and
  // waits for a pending handler before the next (flow control).
  it('under flow control hands queued messages on within microtasks, and waits for a pending handler', async () => {
    const s = new LogicalReplicationService({}, { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: true } });
    const internal = s as unknown as Internals;
    internal._stop = false;
    const handled: string[] = [];
    let hold: (() => void) | undefined;
    s.on('data', (lsn: string) => {
      handled.push(lsn);
      if (lsn === '0/4') return new Promise<void>((r) => { hold = r; });
      return undefined;
    });
    const tick = () => new Promise((r) => setImmediate(r));
    internal._messageQueue.push({ lsn: '0/1', data: {} }, { lsn: '0/2', data: {} }, { lsn: '0/3', data: {} });
    internal._processQueue();
    await tick();
    assert.deepEqual(handled, ['0/1', '0/2', '0/3'], 'handed on before the next macrotask');
    internal._messageQueue.push({ lsn: '0/4', data: {} }, { lsn: '0/5', data: {} });
    internal._processQueue();
    await tick();
    assert.deepEqual(handled, ['0/1', '0/2', '0/3', '0/4'], 'the next waits for the pending handler');
    hold!();
    await tick();
    assert.deepEqual(handled, ['0/1', '0/2', '0/3', '0/4', '0/5']);
  });

  it('acknowledge(x) reports x + 1 as flushed, so acknowledgeUpTo(lsn) sends lsn', async () => {
    const s = new LogicalReplicationService({}, { acknowledge: { auto: false, timeoutSeconds: 0 } });
    const sent: Buffer[] = [];
    const internal = s as unknown as Internals;
    internal._stop = false;
    internal._connection = { sendCopyFromChunk: (b: Buffer) => sent.push(b) };
    await acknowledgeUpTo(s, parseLsn('1/10'));
    const b = sent[0]!;
    assert.equal(b[0], 0x72);   // standby status update
    const flushed = (BigInt(b.readUInt32BE(9)) << 32n) | BigInt(b.readUInt32BE(13));
    assert.equal(flushed, parseLsn('1/10'));
  });

  // src/stream/library.ts (OutboxPgoutput) changes the parser a relation message's
  // column holds: the rows after it must be parsed with it.
  it('parses the rows of espf.events with the parsers their relation message holds', () => {
    const text = (s: string) => Buffer.from(`${s}\0`);
    const u8 = (n: number) => Buffer.from([n]);
    const i16 = (n: number) => { const b = Buffer.alloc(2); b.writeInt16BE(n); return b; };
    const i32 = (n: number) => { const b = Buffer.alloc(4); b.writeInt32BE(n); return b; };
    const columns: [string, number][] = [['i_event', 20], ['event_type', 25], ['variables', 3802], ['source_i_event', 20], ['created_at', 1184]];
    const relation = Buffer.concat([u8(0x52), i32(16400), text('espf'), text('events'), u8(0x64), i16(columns.length),
      ...columns.flatMap(([name, oid]) => [u8(0), text(name), i32(oid), i32(-1)])]);
    const values = ['12345678901', 'Account/Blocked', '{"i_env": 1, "i_account": 7}', null, '2026-12-07 05:08:02.123456+00'];
    const insert = Buffer.concat([u8(0x49), i32(16400), u8(0x4e), i16(values.length),
      ...values.flatMap((v) => v === null ? [u8(0x6e)] : [u8(0x74), i32(Buffer.byteLength(v)), Buffer.from(v)])]);
    const plugin = new OutboxPgoutput({ protoVersion: 1, publicationNames: ['p'] });
    const r = plugin.parse(relation) as { tag: string; columns: { name: string; parser: (s: string) => unknown }[] };
    assert.equal(r.tag, 'relation');
    const parser = (name: string) => r.columns.find((c) => c.name === name)!.parser;
    const pg = createRequire(import.meta.url)('pg') as { types: { getTypeParser(oid: number): unknown } };
    assert.notEqual(parser('created_at'), pg.types.getTypeParser(1184), 'created_at: the parser of src/stream/timestamp.ts');
    assert.notEqual(parser('i_event'), pg.types.getTypeParser(20), 'i_event: kept as text');
    assert.equal(parser('variables'), pg.types.getTypeParser(3802), 'variables: pg\'s own');
    // The rows are parsed with the parsers the relation message holds then (a marker shows it).
    const variables = r.columns.find((c) => c.name === 'variables')!;
    variables.parser = (s: string) => ['marker', s];
    const m = plugin.parse(insert) as { tag: string; new: Record<string, unknown> };
    assert.equal(m.tag, 'insert');
    assert.equal(m.new.i_event, '12345678901');
    assert.equal(m.new.source_i_event, null);
    assert.deepEqual(m.new.variables, ['marker', '{"i_env": 1, "i_account": 7}']);
    assert.ok(m.new.created_at instanceof Date);
    assert.equal((m.new.created_at as Date).toISOString(), '2026-12-07T05:08:02.123Z');
    // Read straight from the buffer, the row is the one the library's own reader makes.
    variables.parser = pg.types.getTypeParser(3802) as (s: string) => unknown;
    const own = (plugin as unknown as { parser: { parse(b: Buffer): { new: Record<string, unknown> } } }).parser.parse(insert);
    assert.deepEqual({ ...(plugin.parse(insert) as { new: Record<string, unknown> }).new }, { ...own.new });
    // A kind it does not read (binary) goes to the library's reader.
    const binary = Buffer.concat([u8(0x49), i32(16400), u8(0x4e), i16(values.length),
      ...values.map((v, k) => k === 1 ? Buffer.concat([u8(0x62), i32(2), Buffer.from('ab')]) : v === null ? u8(0x6e) : Buffer.concat([u8(0x74), i32(Buffer.byteLength(v)), Buffer.from(v)]))]);
    assert.ok(Buffer.isBuffer((plugin.parse(binary) as { new: Record<string, unknown> }).new.event_type));
  });
});
