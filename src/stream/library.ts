// Everything espf relies on from pg-logical-replication beyond its typed API,
// in one place (and, in src/stream/replication.ts, how its flow control hands
// messages on); test/unit/replication-library.test.ts pins both to the
// installed version, so an upgrade that changes them fails there first.
import type { LogicalReplicationService } from 'pg-logical-replication';
import { formatLsn } from './lsn.ts';

/**
 * Tells the server that everything up to `lsn` is flushed. The library's
 * acknowledge(x) reports x + 1 as written, flushed and applied: give it one
 * less, or the server would consider the first byte after `lsn` done too.
 */
export function acknowledgeUpTo(service: LogicalReplicationService, lsn: bigint): Promise<boolean> {
  return service.acknowledge(formatLsn(lsn > 0n ? lsn - 1n : 0n));
}
