// Everything espf relies on from pg-logical-replication beyond its typed API,
// in one place (and, in src/stream/replication.ts, how its flow control hands
// messages on); test/unit/replication-library.test.ts pins both to the
// installed version, so an upgrade that changes them fails there first.
import { PgoutputPlugin, type LogicalReplicationService, type Pgoutput } from 'pg-logical-replication';
import { formatLsn } from './lsn.ts';
import { timestamptzParser } from './timestamp.ts';

/**
 * Tells the server that everything up to `lsn` is flushed. The library's
 * acknowledge(x) reports x + 1 as written, flushed and applied: give it one
 * less, or the server would consider the first byte after `lsn` done too.
 */
export function acknowledgeUpTo(service: LogicalReplicationService, lsn: bigint): Promise<boolean> {
  return service.acknowledge(formatLsn(lsn > 0n ? lsn - 1n : 0n));
}

/** Text kept as it comes: i_event and source_i_event (int8) become numbers in src/stream/replication.ts. */
const asText = (text: string): string => text;

/**
 * pgoutput, with the columns of espf.events read more cheaply per event: the
 * library parses each column of a row with the parser its relation message
 * holds (`RelationColumn.parser`, the one pg registers for its type, chosen
 * when the relation message is parsed, before the rows that follow it are).
 * Here created_at goes through a parser without regular expressions (src/stream/timestamp.ts)
 * and the int8 columns stay text, which the stream turns into numbers anyway (pg's
 * parser would test them with a regular expression first).
 */
export class OutboxPgoutput extends PgoutputPlugin {
  override parse(buffer: Buffer): Pgoutput.Message {
    const m = super.parse(buffer);
    if (m.tag === 'relation' && m.schema === 'espf' && m.name === 'events') {
      for (const c of m.columns) {
        if (c.name === 'created_at' && c.typeOid === TIMESTAMPTZ) c.parser = timestamptzParser(c.parser);
        else if ((c.name === 'i_event' || c.name === 'source_i_event') && c.typeOid === INT8) c.parser = asText;
      }
    }
    return m;
  }
}

const TIMESTAMPTZ = 1184;
const INT8 = 20;
