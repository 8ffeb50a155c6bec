import { EspfError, isConnectionError, oneLine, sqlState } from '../errors.ts';

/**
 * A DATABASE_URL may list several hosts, as libpq allows:
 *
 *   postgres://espf@db1:5432,db2:5432/billing?target_session_attrs=read-write
 *
 * node-postgres connects to one host only and knows no target_session_attrs,
 * so espf does it itself: it asks every host whether it is in recovery and
 * keeps the primary. The pool and the replication connection then get a URL
 * with that one host. After a failover the same search finds the promoted
 * standby (see docs/operations.md, "Failover").
 */
export interface DatabaseHost {
  readonly host: string;
  readonly port?: number;
}

export interface ParsedHosts {
  readonly hosts: readonly DatabaseHost[];
  /** The URL with only this host (and without target_session_attrs). */
  urlFor(h: DatabaseHost): string;
}

const URL_SHAPE = /^(postgres(?:ql)?:\/\/)([^@/?#]*@)?([^/?#]*)(.*)$/i;

/**
 * The hosts of a URL; a plain one-host URL gives one host. Throws ESPF_USAGE on
 * a malformed list, and on a target_session_attrs espf cannot honour (unless
 * `checkAttrs` is false).
 */
export function parseHosts(url: string, checkAttrs = true): ParsedHosts {
  const m = URL_SHAPE.exec(url);
  if (!m) return { hosts: [{ host: '' }], urlFor: () => url };
  const [, scheme, userinfo = '', authority = '', rest = ''] = m;
  const hosts = authority.split(',').map((part) => parseHost(part));
  if (hosts.length > 1 && hosts.some((h) => h.host === '')) throw new EspfError('ESPF_USAGE', 'DATABASE_URL: an empty host in the list of hosts');
  const params = stripTargetSessionAttrs(rest);
  if (checkAttrs && params.value !== undefined && !['read-write', 'primary', 'any'].includes(params.value)) {
    throw new EspfError('ESPF_USAGE', `DATABASE_URL: target_session_attrs=${params.value} is not supported: espf writes, it needs the primary (read-write)`);
  }
  return {
    hosts,
    urlFor: (h) => `${scheme}${userinfo}${formatHost(h)}${params.rest}`,
  };
}

function parseHost(part: string): DatabaseHost {
  const m = /^(\[[^\]]+\]|[^:]*)(?::(\d*))?$/.exec(part);
  if (!m) throw new EspfError('ESPF_USAGE', `DATABASE_URL: '${part}' is not host[:port]`);
  const port = m[2] ? Number(m[2]) : undefined;
  if (port !== undefined && (port < 1 || port > 65535)) throw new EspfError('ESPF_USAGE', `DATABASE_URL: port ${m[2]} is out of range`);
  return port === undefined ? { host: m[1]! } : { host: m[1]!, port };
}

/** host:port of a one-host URL, for messages ("the local socket" when it names no host). */
export function hostLabel(url: string): string {
  const h = parseHosts(url, false).hosts[0];
  return h && h.host ? formatHost(h) : 'the local socket';
}

/** Whether `url` is a postgres:// URL with one host or several, each of its one-host forms a valid URL. */
export function isPostgresUrl(url: string): boolean {
  if (!URL_SHAPE.test(url)) return false;
  try {
    const parsed = parseHosts(url, false);
    return parsed.hosts.every((h) => ['postgres:', 'postgresql:'].includes(new URL(parsed.urlFor(h)).protocol));
  } catch {
    return false;
  }
}

function formatHost(h: DatabaseHost): string {
  return h.port === undefined ? h.host : `${h.host}:${h.port}`;
}

function stripTargetSessionAttrs(rest: string): { rest: string; value?: string } {
  const q = rest.indexOf('?');
  if (q < 0) return { rest };
  const params = new URLSearchParams(rest.slice(q + 1));
  const value = params.get('target_session_attrs') ?? undefined;
  params.delete('target_session_attrs');
  const query = params.toString();
  return { rest: rest.slice(0, q) + (query ? `?${query}` : ''), value };
}

/** Answers whether the server at `url` is in recovery; throws when it cannot be reached. */
export type RecoveryProbe = (url: string) => Promise<boolean>;

/**
 * The one-host URL of the primary: every host is asked at once, the first in
 * the list that is not in recovery wins. A one-host URL is returned as it is
 * (minus target_session_attrs). ESPF_NO_PRIMARY when no host is a primary.
 */
export async function findPrimary(url: string, probe: RecoveryProbe): Promise<string> {
  const parsed = parseHosts(url);
  if (parsed.hosts.length === 1) return parsed.urlFor(parsed.hosts[0]!);
  const answers = await Promise.all(parsed.hosts.map(async (h) => {
    const u = parsed.urlFor(h);
    try {
      return { h, u, standby: await probe(u) };
    } catch (err) {
      return { h, u, err };
    }
  }));
  const primary = answers.find((a) => a.standby === false);
  if (primary) return primary.u;
  const why = answers.map((a) => `${formatHost(a.h)}: ${a.err ? oneLine(a.err) : 'in recovery (a standby)'}`).join('; ');
  throw new EspfError('ESPF_NO_PRIMARY', `no primary among the hosts of DATABASE_URL (${why})`);
}

/**
 * Errors after which the primary may have moved: the server is gone, it is
 * (now) read-only, or the connection broke without a server error (no code).
 */
export function primaryMayHaveMoved(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === undefined || isConnectionError(err) || sqlState(err) === READ_ONLY_SQL_TRANSACTION;
}

const READ_ONLY_SQL_TRANSACTION = '25006';
