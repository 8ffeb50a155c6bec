// Statements outside the hot path are built with Kysely against the espf
// schema (src/db/schema.ts) and run on the one @databases/pg pool: Kysely only
// compiles (its "splitting query building and execution" recipe, with a
// driver that never connects), @databases/pg executes.
import { sql, type Queryable, type SQLQuery } from '@databases/pg';
import {
  DummyDriver, Kysely, PostgresAdapter, PostgresIntrospector, PostgresQueryCompiler,
  type Compilable, type CompiledQuery,
} from 'kysely';
import type { Database } from './schema.ts';

/** The query builder (it cannot execute: pass what it builds to `run`). */
export const q = new Kysely<Database>({
  dialect: {
    createAdapter: () => new PostgresAdapter(),
    createDriver: () => new DummyDriver(),
    createIntrospector: (k) => new PostgresIntrospector(k),
    createQueryCompiler: () => new PostgresQueryCompiler(),
  },
});

/** A compiled Kysely statement as a @databases/pg query ($n placeholders become values). */
export function toSql(compiled: CompiledQuery): SQLQuery {
  const parts: SQLQuery[] = [];
  let last = 0;
  for (const m of compiled.sql.matchAll(/\$(\d+)/g)) {
    parts.push(sql.__dangerous__rawValue(compiled.sql.slice(last, m.index)));
    parts.push(sql.value(compiled.parameters[Number(m[1]) - 1]));
    last = m.index + m[0].length;
  }
  parts.push(sql.__dangerous__rawValue(compiled.sql.slice(last)));
  return sql.join(parts, '');
}

/** Runs a statement built with `q`; its rows, typed as Kysely infers them. */
export function run<R>(db: Queryable, query: Compilable<R>): Promise<R[]> {
  return db.query(toSql(query.compile()));
}

/** The first row, or undefined. */
export async function first<R>(db: Queryable, query: Compilable<R>): Promise<R | undefined> {
  const [row] = await run(db, query);
  return row;
}
