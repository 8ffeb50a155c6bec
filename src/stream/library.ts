// Everything espf relies on from pg-logical-replication beyond its typed API,
// in one place; test/unit/replication-library.test.ts pins it to the installed
// version, so an upgrade that changes it fails there first.
import type { LogicalReplicationService } from 'pg-logical-replication';
import { formatLsn } from './lsn.ts';

/**
 * True when no received message waits in the library's flow-control queue.
 * Under flow control the library queues data messages while our handler
 * works, but emits keepalives at once: a keepalive may overtake queued data,
 * so its position is only ours to acknowledge once this queue is empty. The
 * library keeps the queue in fields it does not declare (v2.5).
 */
export function queueEmpty(service: LogicalReplicationService): boolean {
  const internal = service as unknown as { _messageQueue?: unknown[]; _processing?: boolean };
  return (internal._messageQueue?.length ?? 0) === 0 && !internal._processing;
}

/**
 * Tells the server that everything up to `lsn` is flushed. The library's
 * acknowledge(x) reports x + 1 as written, flushed and applied: give it one
 * less, or the server would consider the first byte after `lsn` done too.
 */
export function acknowledgeUpTo(service: LogicalReplicationService, lsn: bigint): Promise<boolean> {
  return service.acknowledge(formatLsn(lsn > 0n ? lsn - 1n : 0n));
}
