// The `espf` command's entry point: bin/espf.js runs its compiled form
// (dist/cli/entry.js); the tests run it from source through tsx.
import { main } from './main.ts';

// `espf … | head`: a closed pipe is not an error worth a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => { if (err.code !== 'EPIPE') throw err; });
}
process.exitCode = await main(process.argv);
