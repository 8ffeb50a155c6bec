import { fileURLToPath } from 'node:url';
import path from 'node:path';

/** The repository root (where migrations/ and sql/ live). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const MIGRATIONS_DIR = path.join(ROOT, 'migrations');
export const REPEATABLE_SQL_DIR = path.join(ROOT, 'sql');
