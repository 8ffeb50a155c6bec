import type { TransportOptions } from 'nodemailer';
import { oneLine } from '../errors.ts';
import { redactText } from '../security/redact.ts';
import { resolveSecret } from '../security/secret-ref.ts';

/** Where e-mails go: the resolved smtp(s) URL and the secrets it carries (never logged). */
export interface SmtpTarget {
  readonly url: string;
  readonly secrets: readonly string[];
}

/**
 * espf.notifications.smtp_url, with `env:NAME` read from the environment.
 * Throws without quoting the value (it may carry a password).
 */
export function resolveSmtpUrl(value: string): SmtpTarget {
  const url = resolveSecret(value, 'espf.notifications.smtp_url');
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error('espf.notifications.smtp_url is not a URL (smtp://host[:port] or smtps://…)');
  }
  if (parsed.protocol !== 'smtp:' && parsed.protocol !== 'smtps:') {
    throw new Error('espf.notifications.smtp_url must start with smtp:// or smtps://');
  }
  const secrets: string[] = [];
  if (parsed.password) {
    secrets.push(parsed.password);
    const decoded = decodeURIComponent(parsed.password);
    if (decoded !== parsed.password) secrets.push(decoded);
  }
  return { url, secrets };
}

export interface Mail {
  readonly from: string;
  readonly to: readonly string[];
  readonly subject: string;
  readonly text: string;
}

/** Sends one e-mail; the error thrown, if any, has its secrets masked. */
export async function sendMail(target: SmtpTarget, mail: Mail): Promise<{ messageId: string }> {
  // Loaded on the first e-mail, not at start: most runs never send one (docs/operations.md, "Memory").
  const { default: nodemailer } = await import('nodemailer');
  const transport = nodemailer.createTransport({
    url: target.url,
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 30_000,
    logger: false,
    debug: false,
  } as TransportOptions);
  try {
    const info = await transport.sendMail({ from: mail.from, to: [...mail.to], subject: mail.subject, text: mail.text });
    return { messageId: String(info.messageId) };
  } catch (err) {
    const message = redactText(oneLine(err), target.secrets);
    throw new Error(`SMTP: ${message}`);
  } finally {
    transport.close();
  }
}
