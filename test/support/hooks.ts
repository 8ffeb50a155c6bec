import { startTestServer, stopTestServer } from './cluster.ts';

// Mocha global fixtures: one server and one migrated template for the whole run.
export async function mochaGlobalSetup(): Promise<void> {
  const s = await startTestServer();
  process.stderr.write(`# test PostgreSQL: ${s.kind}${s.cluster ? ` ${s.cluster.version} at ${s.cluster.url}` : ''}\n`);
}

export async function mochaGlobalTeardown(): Promise<void> {
  await stopTestServer();
}
