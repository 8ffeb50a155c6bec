#!/usr/bin/env -S node --max-old-space-size=224 --max-semi-space-size=8 --liftoff-only --heap-growing-percent=10
// The flags above bound the resident memory of `espf run` while it drains a
// backlog of a million events (docs/operations.md, "Memory"): the old-space limit
// makes V8 collect sooner, and --heap-growing-percent=10 grows the old space by a
// tenth past what lives (it does not lower the limit); a young generation of
// 2 x 8 MB instead of 2 x 16 MB (a drain touches it whole within seconds);
// --liftoff-only keeps WebAssembly (undici's HTTP parser, llhttp) in its baseline
// code: optimizing it took about 30 MB for a moment at the start of a drain.
// Started as `node bin/espf.js` they do not apply, and
// `node --max-old-space-size=N bin/espf.js` sets another limit.
// The espf command: runs the compiled JavaScript in dist/ (`make build` or `npm run build`).
import { existsSync } from 'node:fs';

const entry = new URL('../dist/cli/entry.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('espf: dist/ is not built: run make build (or npm run build) in the repository first\n');
  process.exit(1);
}
await import(entry.href);
