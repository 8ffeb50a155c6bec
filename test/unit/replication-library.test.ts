// Pins what src/stream/library.ts relies on in pg-logical-replication beyond
// its typed API: an upgrade that changes it fails here first.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { LogicalReplicationService } from 'pg-logical-replication';
import { acknowledgeUpTo } from '../../src/stream/library.ts';
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
});
