/**
 * Server-rendered HTML: a tagged template whose interpolations are escaped
 * unless they are already Html (or arrays of it). No other way to write markup.
 */
export class Html {
  constructor(readonly text: string) {}
  toString(): string { return this.text; }
}

export type Value = Html | string | number | boolean | null | undefined | readonly Value[];

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escape(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

function render(v: Value): string {
  if (v === null || v === undefined || v === false) return '';
  if (v instanceof Html) return v.text;
  if (Array.isArray(v)) return v.map(render).join('');
  return escape(String(v));
}

export function html(strings: TemplateStringsArray, ...values: Value[]): Html {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += render(values[i]!) + strings[i + 1]!;
  return new Html(out);
}

/** Markup from a trusted constant (never from input). */
export function raw(text: string): Html {
  return new Html(text);
}

/** A date for people: UTC, to the second. */
export function when(v: unknown): string {
  if (v === null || v === undefined) return '';
  const d = v instanceof Date ? v : new Date(String(v));
  if (Number.isNaN(d.getTime())) return String(v);
  return d.toISOString().replace('T', ' ').replace(/\.\d{3}Z$/, 'Z');
}

/** A duration in seconds for people: 45 s, 12 min, 3.5 h, 2.1 d. */
export function age(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '';
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}

/** An inline SVG sparkline of a series (no script, no library). */
export function sparkline(values: readonly number[], opts: { label: string; color?: string; width?: number; height?: number }): Html {
  const w = opts.width ?? 160;
  const h = opts.height ?? 28;
  const max = Math.max(1, ...values);
  const step = values.length > 1 ? w / (values.length - 1) : w;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(h - 2 - (v / max) * (h - 4)).toFixed(1)}`).join(' ');
  const total = values.reduce((a, b) => a + b, 0);
  return html`<svg class="spark" role="img" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}"><title>${opts.label}: ${total} in all, at most ${Math.max(0, ...values)} per bucket</title><polyline fill="none" stroke="${opts.color ?? '#2563eb'}" stroke-width="1.5" points="${points}"/></svg>`;
}
