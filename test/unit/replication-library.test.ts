// Pins what src/stream/library.ts relies on in pg-logical-replication beyond
// its typed API: an upgrade that changes it fails here first.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { LogicalReplicationService } from 'pg-logical-replication';
import { acknowledgeUpTo, queueEmpty } from '../../src/stream/library.ts';
import { parseLsn } from '../../src/stream/lsn.ts';

type Internals = { _messageQueue: unknown[]; _processing: boolean; _stop: boolean; _connection: unknown };

describe('unit: pg-logical-replication internals espf relies on', function () {
  it('is the version the wrapper was checked against', () => {
    const require = createRequire(import.meta.url);
    const version = (require('pg-logical-replication/package.json') as { version: string }).version;
    assert.match(version, /^2\.5\./, 'check src/stream/library.ts against the new version, then update this pin');
  });

  it('keeps its flow-control queue in _messageQueue and _processing', () => {
    const s = new LogicalReplicationService({}, { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: true } });
    const internal = s as unknown as Internals;
    assert.ok(Array.isArray(internal._messageQueue));
    assert.equal(internal._processing, false);
    assert.equal(queueEmpty(s), true);
    internal._messageQueue.push({ lsn: '0/1', data: {} });
    assert.equal(queueEmpty(s), false);
    internal._messageQueue.length = 0;
    internal._processing = true;
    assert.equal(queueEmpty(s), false);
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
