import { html, type Html, type Value } from './html.ts';
import type { Session } from './store.ts';

export interface PageContext {
  readonly session: Session | null;
  readonly path: string;
}

const NAV: readonly [string, string][] = [
  ['/console/', 'Overview'],
  ['/console/matrix', 'Matrix'],
  ['/console/handlers', 'Handlers'],
  ['/console/subscribers', 'Subscribers'],
  ['/console/deliveries', 'Deliveries'],
  ['/console/rules', 'Rules'],
  ['/console/audit', 'Audit'],
];

export function csrfField(ctx: PageContext): Html {
  return html`<input type="hidden" name="_csrf" value="${ctx.session?.csrf ?? ''}">`;
}

export function canChange(ctx: PageContext): boolean {
  return ctx.session?.role === 'admin';
}

/** A message above the page: done (green) or refused (red, with role=alert). */
export function notice(kind: 'ok' | 'error', text: string | null | undefined): Html {
  if (!text) return html``;
  return kind === 'ok'
    ? html`<p class="notice ok" role="status">${text}</p>`
    : html`<p class="notice error" role="alert">${text}</p>`;
}

export function layout(ctx: PageContext, title: string, body: Value): Html {
  const s = ctx.session;
  const current = (href: string) => (href === '/console/' ? ctx.path === '/console/' : ctx.path.startsWith(href));
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · espf console</title>
<link rel="stylesheet" href="/console/static/console.css">
<script src="/console/static/console.js" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header>
  <span class="brand">espf</span>
  ${s ? html`<nav aria-label="Console">${NAV.map(([href, label]) => html`<a href="${href}"${current(href) ? html` aria-current="page"` : ''}>${label}</a>`)}</nav>
  <form method="post" action="/console/logout" class="who">${csrfField(ctx)}<span>${s.user} (${s.role})</span> <button type="submit">Log out</button></form>` : ''}
</header>
<main id="main">
<h1>${title}</h1>
${body}
</main>
</body>
</html>
`;
}

/** The answer of an attempt: its error (which names the HTTP status), else the status. */
export function answer(status: number | null | undefined, error: string | null | undefined): string {
  return error ?? (status ? `HTTP ${status}` : '');
}

export function stateBadge(s: string | null | undefined): Html {
  return s ? html`<span class="state ${s}">${s}</span>` : html``;
}

/**
 * The notice after a change that redirected back (?done=…), or null. The query
 * string is anyone's to write (a link in a mail), so it only picks one of these
 * fixed messages: a count must be a whole number, and a name is shown only when
 * `known` (the page's own list from the database) has it; anything else shows nothing.
 */
export function doneMessage(q: URLSearchParams, known: (name: string) => boolean = () => false): string | null {
  const done = q.get('done');
  if (!done) return null;
  if (done === 'saved') return 'Saved.';
  if (done === 'resend') {
    const raw = q.get('n') ?? '';
    if (!/^\d{1,9}$/.test(raw)) return null;
    const n = Number(raw);
    return `${n} ${n === 1 ? 'delivery' : 'deliveries'} re-queued: the instance serving the handler sends again within about a second.`;
  }
  const [kind, a = '', b = ''] = done.split('|');
  if (!known(a)) return null;
  if (kind === 'type' && (b === 'on' || b === 'off')) return `Capture of ${a} switched ${b}.`;
  if (kind === 'handler' && (b === 'on' || b === 'off')) return `Handler ${a} ${b === 'on' ? 'enabled' : 'disabled'}.`;
  if (!known(b)) return null;
  if (kind === 'sub') return `${a} subscribed to ${b}.`;
  if (kind === 'unsub') return `${a} unsubscribed from ${b}.`;
  return null;
}
