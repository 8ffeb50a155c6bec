#!/usr/bin/env node
// The espf command: runs the compiled JavaScript in dist/ (`make build` or `npm run build`).
import { existsSync } from 'node:fs';

const entry = new URL('../dist/cli/entry.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('espf: dist/ is not built: run make build (or npm run build) in the repository first\n');
  process.exit(1);
}
await import(entry.href);
