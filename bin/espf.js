#!/usr/bin/env node
// The espf command: runs the TypeScript sources through tsx (no build step).
import { register } from 'tsx/esm/api';

register();
// `espf … | head`: a closed pipe is not an error worth a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err) => { if (err.code !== 'EPIPE') throw err; });
}
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv);
