// CLI entry of the example receiver:
//   AUTH_METHOD=Basic BASIC_USER=espf BASIC_KEY=secret npx tsx examples/receiver/main.ts
// Settings come from the environment; see README.md beside this file.
import { ConfigError, configFromEnv } from './src/config.ts';
import { createReceiver } from './src/server.ts';

let config;
try {
  config = configFromEnv(process.env);
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`receiver: ${err.message}\n`);
    process.exit(2);
  }
  throw err;
}

const receiver = createReceiver(config.options);
await receiver.listen(config.port, config.host);

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    receiver.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
}
