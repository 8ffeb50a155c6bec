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
  /** The last relation message of espf.events (its columns hold the parsers above). */
  private outbox: Pgoutput.MessageRelation | undefined;

  override parse(buffer: Buffer): Pgoutput.Message {
    // An insert into espf.events, the message of every event: read here, straight from the
    // buffer (the library makes a Buffer per column and a dictionary object per row).
    const o = this.outbox;
    if (o !== undefined && buffer[0] === INSERT && buffer.length >= 8 && buffer[5] === NEW_TUPLE && buffer.readInt32BE(1) === o.relationOid) {
      const row = readRow(buffer, 6, o.columns);
      if (row !== null) return { tag: 'insert', relation: o, new: row };
    }
    const m = super.parse(buffer);
    if (m.tag === 'relation' && m.schema === 'espf' && m.name === 'events') {
      for (const c of m.columns) {
        if (c.name === 'created_at' && c.typeOid === TIMESTAMPTZ) c.parser = timestamptzParser(c.parser);
        else if ((c.name === 'i_event' || c.name === 'source_i_event') && c.typeOid === INT8) c.parser = asText;
      }
      this.outbox = m;
    }
    return m;
  }
}

const INSERT = 0x49;     // 'I'
const NEW_TUPLE = 0x4e;  // 'N'
const TEXT = 0x74;       // 't'
const NULL = 0x6e;       // 'n'

/**
 * The columns of a row (TupleData of the logical replication protocol) at
 * `at`, each parsed by its column's parser; null when the row holds a kind
 * this does not read (binary, unchanged TOAST) or does not match its
 * relation: the library reads it then.
 */
function readRow(b: Buffer, at: number, columns: readonly Pgoutput.RelationColumn[]): Record<string, unknown> | null {
  const n = b.readInt16BE(at);
  if (n !== columns.length) return null;
  let p = at + 2;
  const row: Record<string, unknown> = {};
  for (let i = 0; i < n; i++) {
    if (p >= b.length) return null;
    const kind = b[p++];
    const c = columns[i]!;
    if (kind === NULL) { row[c.name] = null; continue; }
    if (kind !== TEXT || p + 4 > b.length) return null;
    const len = b.readInt32BE(p);
    p += 4;
    if (len < 0 || p + len > b.length) return null;
    row[c.name] = c.parser(b.toString('utf8', p, p + len));
    p += len;
  }
  return row;
}

const TIMESTAMPTZ = 1184;
const INT8 = 20;
