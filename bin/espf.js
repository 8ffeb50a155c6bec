#!/usr/bin/env -S node --max-old-space-size=224
// The heap limit above keeps `espf run` under 200 MB resident while it drains a
// backlog of a million events (docs/operations.md, "Memory"); started as
// `node bin/espf.js` it does not apply, and `node --max-old-space-size=N bin/espf.js`
// sets another limit.
// The espf command: runs the compiled JavaScript in dist/ (`make build` or `npm run build`).
import { existsSync } from 'node:fs';

const entry = new URL('../dist/cli/entry.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('espf: dist/ is not built: run make build (or npm run build) in the repository first\n');
  process.exit(1);
}
await import(entry.href);
