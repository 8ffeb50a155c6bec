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
