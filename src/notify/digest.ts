import type { Db } from '../db/connect.ts';
import {
  claimTask, downTargets, noteFailuresNotified, notificationSettings, recordResult, slotLags, unreachableTargets, unreportedFailures,
  type FailedDelivery, type SlotLag, type UnreachableTarget,
} from '../db/maintenance.ts';
import { oneLine } from '../errors.ts';
import type { Logger } from '../log/logger.ts';
import { redactText, redactUrl } from '../security/redact.ts';
import { resolveSmtpUrl, sendMail, type Mail } from './smtp.ts';

export interface DigestOptions {
  readonly db: Db;
  readonly log: Logger;
  readonly instance: string;
}

export interface DigestResult {
  /** false: e-mails are disabled, or the gate is closed (a digest went out less than digest_interval ago, maybe from another instance). */
  readonly ran: boolean;
  readonly reason?: 'disabled' | 'not-due';
  readonly sent: boolean;
  readonly failed: number;        // deliveries failed for good, not reported before
  readonly unreachable: number;   // targets failing for longer than unreachable_after
  readonly lagging: number;       // espf_% slots past slot_lag_warn_bytes
  readonly error?: string;        // why the e-mail could not be sent (secrets masked)
}

export type { FailedDelivery, UnreachableTarget };
export type LaggingSlot = SlotLag;

/** Failures listed one per line in the e-mail; more are counted. */
const LISTED = 100;
/** Failures taken per digest (the rest go in the next one). */
const PER_DIGEST = 10_000;

/**
 * One digest pass: when e-mails are enabled and the gate opens (at most once per
 * espf.notifications.digest_interval across every instance), an e-mail listing
 * deliveries that failed for good since the last digest, targets failing for
 * longer than unreachable_after, and replication slots lagging past
 * slot_lag_warn_bytes. Nothing is sent when there is nothing to report.
 * An SMTP error is logged and returned (secrets masked); the failures stay
 * unreported and go in the next digest. Database errors are thrown.
 */
export async function runDigest(opts: DigestOptions): Promise<DigestResult> {
  const { db, log, instance } = opts;
  const none = { sent: false, failed: 0, unreachable: 0, lagging: 0 };
  const s = await notificationSettings(db);
  if (!s?.enabled) return { ran: false, reason: 'disabled', ...none };
  const claimed = await claimTask(db, 'digest', instance);
  if (!claimed) return { ran: false, reason: 'not-due', ...none };

  const failed = await unreportedFailures(db, s.since, PER_DIGEST);
  // Targets the circuit breaker holds down first; then handlers whose deliveries keep failing.
  const down = await downTargets(db, s.unreachable_after);
  const failing = await unreachableTargets(db, s.unreachable_after);
  const unreachable = [...down, ...failing.filter((f) => !down.some((d) => d.handler === f.handler))];
  const lagging = await slotLags(db, Number(s.slot_lag_warn_bytes));
  const counts = { failed: failed.length, unreachable: unreachable.length, lagging: lagging.length };
  if (counts.failed + counts.unreachable + counts.lagging === 0) {
    await recordResult(db, 'digest', { sent: false, ...counts });
    return { ran: true, ...none };
  }

  let secrets: readonly string[] = [];
  try {
    const target = resolveSmtpUrl(s.smtp_url ?? '');
    secrets = target.secrets;
    const mail = composeDigest({ from: s.mail_from ?? '', to: s.recipients, instance, failed, unreachable, lagging });
    await sendMail(target, mail);
  } catch (err) {
    const error = redactText(oneLine(err), secrets);
    log.warn({ task: 'digest', error, ...counts }, 'failure e-mail not sent; it will be tried again after digest_interval');
    await recordResult(db, 'digest', { sent: false, error, ...counts });
    return { ran: true, sent: false, ...counts, error };
  }
  await noteFailuresNotified(db, failed);
  await recordResult(db, 'digest', { sent: true, ...counts });
  log.info({ task: 'digest', recipients: s.recipients.length, ...counts }, 'failure e-mail sent');
  return { ran: true, sent: true, ...counts };
}

/** The e-mail: a subject with the counts, one section per kind of trouble. */
export function composeDigest(d: {
  from: string; to: readonly string[]; instance: string;
  failed: readonly FailedDelivery[]; unreachable: readonly UnreachableTarget[]; lagging: readonly LaggingSlot[];
}): Mail {
  const parts: string[] = [];
  if (d.failed.length) parts.push(plural(d.failed.length, 'delivery', 'deliveries') + ' failed for good');
  if (d.unreachable.length) parts.push(plural(d.unreachable.length, 'target', 'targets') + ' unreachable');
  if (d.lagging.length) parts.push(plural(d.lagging.length, 'replication slot', 'replication slots') + ' lagging');
  const lines: string[] = [`espf failure digest from instance ${d.instance}.`, ''];
  if (d.failed.length) {
    lines.push(`Deliveries that failed for good (max_attempts reached): ${d.failed.length}`);
    for (const f of d.failed.slice(0, LISTED)) {
      lines.push(`  i_event ${f.i_event}  ${f.event_type}  handler ${f.handler}` +
        `${f.i_account != null ? `  i_account ${f.i_account}` : ''}  attempts ${f.attempts}` +
        `  last ${f.last_http_status != null ? `HTTP ${f.last_http_status}` : 'error'}` +
        `${f.last_error ? `: ${redactText(f.last_error)}` : ''}  at ${iso(f.finished_at)}`);
    }
    if (d.failed.length > LISTED) lines.push(`  … and ${d.failed.length - LISTED} more (SELECT * FROM espf.event_deliveries WHERE state = 'FAILED')`);
    lines.push('');
  }
  if (d.unreachable.length) {
    lines.push(`Targets failing for longer than unreachable_after: ${d.unreachable.length}`);
    for (const u of d.unreachable) {
      const env = u.i_env != null ? `, i_env ${u.i_env}` : '';
      lines.push(`  handler ${u.handler} (instance ${u.instance ?? '?'}${env})  ${(u.url ?? []).map((x) => redactUrl(x)).join(', ')}`);
      if (u.probes !== undefined && u.probes !== null) {
        lines.push(`    down (circuit breaker open) since ${iso(u.failing_since)}, ${plural(Number(u.probes), 'probe', 'probes')} since; ` +
          `${plural(Number(u.failing), 'delivery', 'deliveries')} waiting; last ` +
          `${u.last_http_status != null ? `HTTP ${u.last_http_status}` : 'error'}${u.last_error ? `: ${redactText(u.last_error)}` : ''}`);
        continue;
      }
      lines.push(`    ${plural(Number(u.failing), 'delivery', 'deliveries')} retrying since ${iso(u.failing_since)}; last ` +
        `${u.last_http_status != null ? `HTTP ${u.last_http_status}` : 'error'}${u.last_error ? `: ${redactText(u.last_error)}` : ''}`);
    }
    lines.push('');
  }
  if (d.lagging.length) {
    lines.push('Replication slots past espf.maintenance.slot_lag_warn_bytes (WAL kept on the database server):');
    for (const l of d.lagging) {
      lines.push(`  ${l.slot_name}  ${bytes(Number(l.lag_bytes))} behind  ${l.active ? 'active' : 'NOT ACTIVE (is espf run for this instance running?)'}` +
        `${l.wal_status ? `  wal_status ${l.wal_status}` : ''}`);
    }
    lines.push('');
  }
  lines.push('Settings: espf.notifications; see docs/maintenance.md.');
  return { from: d.from, to: d.to, subject: `espf: ${parts.join(', ')}`, text: lines.join('\n') };
}

function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

function iso(d: Date | string): string {
  return new Date(d).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}
