// CLI entry of the example HSS:
//   PORT=8081 HSS_PROVISIONING_KEY=change-me npx tsx examples/hss/main.ts
// Settings come from the environment; see README.md beside this file.
import { startHss } from './src/server.ts';

const port = Number(process.env.PORT ?? '8081');
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(`hss: PORT must be a number from 0 to 65535, not "${process.env.PORT}"\n`);
  process.exit(2);
}
const apiKey = process.env.HSS_PROVISIONING_KEY || undefined;
const hss = await startHss({ port, host: process.env.HOST ?? '127.0.0.1', apiKey });
process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), msg: 'listening', url: hss.url, api_key: apiKey !== undefined })}\n`);

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    hss.close().then(() => process.exit(0), () => process.exit(1));
  });
}
