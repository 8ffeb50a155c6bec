import path from 'node:path';
import { mkdirSync } from 'node:fs';
import pino from 'pino';

export type Logger = pino.Logger;

/** The service log: JSON lines on stdout (stderr for warnings is not split: one stream, one order). */
export function serviceLogger(level = process.env.ESPF_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { svc: 'espf' }, timestamp: pino.stdTimeFunctions.isoTime });
}

/** A line of provisioning.log: one per delivery attempt. */
export interface AttemptLine {
  readonly instance: string;
  readonly handler: string;
  readonly i_event: number;
  readonly event_type: string;
  readonly i_account: number | null;
  readonly url: string;
  readonly attempt: number;
  readonly status: number | null;      // HTTP status, or null when no answer
  readonly error: string | null;       // why the attempt failed, or null
  readonly duration_ms: number;
}

export interface ProvisioningLog {
  attempt(line: AttemptLine): void;
  flush(): Promise<void>;
}

/** provisioning.log in ESPF_LOG_DIR (default ./log): JSON lines, written asynchronously in batches. */
export function provisioningLog(dir = process.env.ESPF_LOG_DIR ?? 'log'): ProvisioningLog {
  mkdirSync(dir, { recursive: true });
  const dest = pino.destination({ dest: path.join(dir, 'provisioning.log'), sync: false, minLength: 4096 });
  const log = pino({ base: null, timestamp: pino.stdTimeFunctions.isoTime, messageKey: 'msg' }, dest);
  return {
    attempt: (line) => log.info(line),
    flush: () => new Promise<void>((resolve) => {
      dest.flush((err?: Error) => { void err; resolve(); });
    }),
  };
}
