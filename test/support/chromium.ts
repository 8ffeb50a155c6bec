import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

/**
 * Debian's Chromium (or CHROMIUM_PATH), driven by playwright-core, which never
 * downloads a browser; undefined when none is installed (the browser tests skip).
 */
const CANDIDATES = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];
export const CHROMIUM = CANDIDATES.find((p): p is string => Boolean(p) && existsSync(p!));

/** Says loudly on stderr that the browser tests of this file are skipped. */
export function warnNoChromium(): void {
  process.stderr.write([
    '',
    '#'.repeat(78),
    '# BROWSER TESTS SKIPPED: no Chromium found (looked for CHROMIUM_PATH, /usr/bin/chromium, …).',
    '# Install Debian\'s browser: apt-get install -y chromium   (.ci/run does it on CI)',
    '#'.repeat(78),
    '',
  ].join('\n') + '\n');
}

/** A headless Chromium as the browser tests run it. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
}
