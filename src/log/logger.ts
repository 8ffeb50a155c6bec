import path from 'node:path';
import { mkdirSync, openSync, write } from 'node:fs';
import { open } from 'node:fs/promises';
import pino from 'pino';
import { escapeTerminal } from '../security/terminal.ts';

export type Logger = pino.Logger;

/** Fields never written to the service log as they are (credentials of handlers, tokens). */
export const REDACTED_PATHS = [
  'password', '*.password', 'token', '*.token', 'authorization', '*.authorization', 'headers.authorization',
  'basic_auth_key', '*.basic_auth_key', 'custom_auth_credentials', '*.custom_auth_credentials',
  'signature_auth_key', '*.signature_auth_key', 'smtp_url', '*.smtp_url',
];

export type LogFormat = 'json' | 'pretty';

/**
 * The service log: JSON lines on stdout (one stream, one order), human-readable
 * lines when stdout is a terminal. ESPF_LOG_LEVEL (default info) sets the level,
 * ESPF_LOG_FORMAT (json or pretty) overrides the choice of format, NO_COLOR
 * turns colours off (read and checked in src/config/env.ts).
 */
export function serviceLogger(
  settings: { readonly logLevel: string; readonly logFormat: LogFormat | undefined; readonly noColor: boolean },
  out: { write(s: string): unknown } = process.stdout,
): Logger {
  const isTty = out === process.stdout && Boolean(process.stdout.isTTY);
  const format = settings.logFormat ?? (isTty ? 'pretty' : 'json');
  const options: pino.LoggerOptions = {
    level: settings.logLevel, base: { svc: 'espf' }, timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: REDACTED_PATHS, censor: '***' },
  };
  if (format === 'pretty') {
    const color = isTty && !settings.noColor;
    return pino(options, { write: (line: string) => out.write(prettyLine(line, color)) });
  }
  return pino(options, out === process.stdout ? undefined : { write: (line: string) => out.write(line) });
}

const LEVEL_NAMES: Record<number, [string, string]> = {
  10: ['TRACE', '90'], 20: ['DEBUG', '36'], 30: ['INFO ', '32'], 40: ['WARN ', '33'], 50: ['ERROR', '31'], 60: ['FATAL', '35'],
};

/** One JSON log line as `12:00:00.123 INFO  message key=value …`. */
export function prettyLine(line: string, color = false): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return `${escapeTerminal(line.replace(/\n$/, ''))}\n`;
  }
  const { time, level, msg, svc, pid, hostname, ...rest } = o;
  void svc; void pid; void hostname;
  const t = typeof time === 'string' ? time.slice(11, 23) : '';
  const [name, code] = LEVEL_NAMES[Number(level)] ?? [String(level).padEnd(5), '0'];
  const lvl = color ? `\x1b[${code}m${name}\x1b[0m` : name;
  const fields = Object.entries(rest).map(([k, v]) => {
    const text = escapeTerminal(typeof v === 'string' ? (/[\s"=]/.test(v) || v === '' ? JSON.stringify(v) : v) : String(JSON.stringify(v)));
    return color ? `\x1b[2m${k}=\x1b[0m${text}` : `${k}=${text}`;
  });
  return `${[t, lvl, typeof msg === 'string' ? escapeTerminal(msg) : '', ...fields].filter((x) => x !== '').join(' ')}\n`;
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

/** A string as JSON, remembered: instance, handler, event type and URL recur on every line. */
const quotedStrings = new Map<string, string>();
function quoted(s: string): string {
  let q = quotedStrings.get(s);
  if (q === undefined) {
    if (quotedStrings.size >= 1024) quotedStrings.clear();
    quotedStrings.set(s, q = JSON.stringify(s));
  }
  return q;
}

const WRITE_EVERY_MS = 20;
const WRITE_AT_LENGTH = 64 * 1024;

/**
 * provisioning.log in ESPF_LOG_DIR (default ./log): JSON lines, appended
 * asynchronously in batches; flush() resolves once everything given so far is
 * in the file. A failed write (a full disk) loses those lines, not deliveries:
 * the outcome of every attempt is in espf.event_deliveries.
 */
export function provisioningLog(dir: string): ProvisioningLog {
  mkdirSync(dir, { recursive: true });
  const fd = openSync(path.join(dir, 'provisioning.log'), 'a');
  // The line pino's info() would write ({"level":30,"time":…,…fields}), put together
  // directly: one per attempt, on the hot path. Strings are escaped by JSON.stringify
  // (the few names and URLs that recur, once each); the other fields are numbers or null.
  // Lines gathered for up to WRITE_EVERY_MS (or WRITE_AT_LENGTH characters) go to the
  // file in one write: a write per line cost more than the rest of the line's attempt.
  let ms = -1;
  let prefix = '';
  let pending = '';
  let timer: NodeJS.Timeout | undefined;
  let written: Promise<void> = Promise.resolve();
  const writePending = () => {
    clearTimeout(timer);
    timer = undefined;
    if (pending === '') return;
    const chunk = Buffer.from(pending);
    pending = '';
    written = written.then(() => appendAll(fd, chunk)).catch(() => undefined);
  };
  return {
    attempt: (line) => {
      const now = Date.now();
      if (now !== ms) { ms = now; prefix = `{"level":30,"time":"${new Date(now).toISOString()}",`; }
      pending += `${prefix}"instance":${quoted(line.instance)},"handler":${quoted(line.handler)},"i_event":${line.i_event},`
        + `"event_type":${quoted(line.event_type)},"i_account":${line.i_account},"url":${quoted(line.url)},"attempt":${line.attempt},`
        + `"status":${line.status},"error":${line.error === null ? 'null' : JSON.stringify(line.error)},"duration_ms":${line.duration_ms}}\n`;
      if (pending.length >= WRITE_AT_LENGTH) writePending();
      else timer ??= setTimeout(writePending, WRITE_EVERY_MS);
    },
    flush: () => {
      writePending();
      return written;
    },
  };
}

/** Writes all of `buf` at the end of the file (fs.write may write less than asked). */
async function appendAll(fd: number, buf: Buffer): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    off += await new Promise<number>((resolve, reject) => {
      write(fd, buf, off, buf.length - off, null, (err, n) => (err ? reject(err) : resolve(n)));
    });
  }
}

/** An attempt read back from provisioning.log: its line, with the time it was written. */
export interface LoggedAttempt extends AttemptLine {
  readonly time: string;
}

/**
 * The last attempts of one account in provisioning.log in `dir` (read from
 * its last `maxBytes`), newest first, at most `limit`; none when there is no
 * file. The reader of the lines provisioningLog writes: who shows attempts
 * (the console's subscriber page) does not depend on their byte layout.
 */
export async function readAttempts(dir: string, iAccount: number, opts: { maxBytes?: number; limit?: number } = {}): Promise<LoggedAttempt[]> {
  const maxBytes = opts.maxBytes ?? 2 * 1024 * 1024;
  const limit = opts.limit ?? 100;
  let fh;
  try {
    fh = await open(path.join(dir, 'provisioning.log'), 'r');
  } catch {
    return [];
  }
  try {
    const { size } = await fh.stat();
    const len = Math.min(size, maxBytes);
    const buf = Buffer.alloc(len);
    await fh.read(buf, 0, len, size - len);
    const out: LoggedAttempt[] = [];
    // Written by attempt() above: i_account is a number followed by a comma.
    const needle = `"i_account":${iAccount},`;
    for (const line of buf.toString('utf8').split('\n').reverse()) {
      if (!line.includes(needle)) continue;
      try {
        const o = JSON.parse(line) as LoggedAttempt;
        if (o.i_account === iAccount) out.push(o);
      } catch { /* a partial first line */ }
      if (out.length >= limit) break;
    }
    return out;
  } finally {
    await fh.close();
  }
}
