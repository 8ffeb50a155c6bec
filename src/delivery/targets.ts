import { redactUrl } from '../security/redact.ts';
import type { HttpSettings } from '../config/snapshot.ts';
import type { Logger } from '../log/logger.ts';
import { CircuitBreaker, verdictOf, type BreakerChange } from './breaker.ts';
import type { PostResult } from './http-client.ts';

/** What an operator sees of one target URL of an http handler (metrics, espf status, espf.target_states). */
export interface TargetState {
  readonly url: string;             // its password replaced by *** (src/security/redact.ts)
  readonly up: boolean;
  readonly since: Date;             // the last change of state
  readonly failures: number;        // consecutive failed attempts when it went down (0 while up)
  readonly probes: number;          // probes since it went down
  readonly nextProbeAt: Date | null;
  readonly lastHttpStatus: number | null;
  readonly lastError: string | null;
  /** The environment whose settings the target belongs to (espf.http_handler_envs); null or absent: the default row. */
  readonly iEnv?: number | null;
}

/** A change of a target: it went up or down, or a probe failed (the next one is later). */
export type TargetEvent = BreakerChange | 'probe';

/**
 * The circuit breakers of one http handler, one per target URL
 * (src/delivery/breaker.ts). Logs each change of state once, and reports
 * changes and probes to `report` (espf.target_states).
 */
export class Targets {
  private readonly breakers = new Map<string, { breaker: CircuitBreaker; status: number | null; error: string | null }>();
  private readonly created = new Date();

  /** The handler as log lines name it: with the environment of its lane, when not the default row's. */
  private readonly who: string;
  private readonly env: { readonly i_env?: number };

  constructor(
    private readonly handler: string,
    private readonly log: Logger,
    private readonly report: (state: TargetState, event: TargetEvent) => void,
    iEnv: number | null = null,
  ) {
    this.who = iEnv === null ? handler : `${handler} (i_env ${iEnv})`;
    this.env = iEnv === null ? {} : { i_env: iEnv };
  }

  /** The breaker of a URL (up until attempts say otherwise), with the handler's current settings. */
  breaker(url: string, s: HttpSettings): CircuitBreaker {
    const settings = { failures: s.breaker_failures, probeDelayMs: s.probe_delay * 1000, probeMaxDelayMs: s.probe_max_delay * 1000 };
    let t = this.breakers.get(url);
    if (!t) this.breakers.set(url, t = { breaker: new CircuitBreaker(settings, Date.now()), status: null, error: null });
    else t.breaker.configure(settings);
    return t.breaker;
  }

  /** At start: a target the last run saw down stays down (probed) until a probe succeeds. */
  restoreDown(url: string, s: HttpSettings, since: Date, probes: number): void {
    if (this.breakers.has(url)) return;
    this.breaker(url, s).restoreDown(Date.now(), since.getTime(), probes);
    this.log.warn({ handler: this.handler, ...this.env, url: redactUrl(url), since },
      `target down: ${this.who} ${redactUrl(url)} was down when espf run last stopped; its deliveries wait, one probe at a time`);
  }

  /** The soonest a probe may go to one of these URLs that is down (ms, Infinity while one is on the wire); null when none is down. */
  probeWaitMs(urls: readonly string[]): number | null {
    let wait: number | null = null;
    const now = Date.now();
    for (const url of urls) {
      const b = this.breakers.get(url)?.breaker;
      if (!b || b.up) continue;
      const w = b.probeWaitMs(now);
      wait = wait === null ? w : Math.min(wait, w);
    }
    return wait;
  }

  /** Some target of the handler is down. */
  get anyDown(): boolean {
    for (const t of this.breakers.values()) if (!t.breaker.up) return true;
    return false;
  }

  /** The result of one POST to `url` (`probe`: sent while it was down). Returns the change of state, if any. */
  record(url: string, r: PostResult, probe: boolean): BreakerChange | null {
    const t = this.breakers.get(url);
    if (!t) return null;
    t.status = r.status;
    t.error = r.ok ? null : r.reason;
    const change = t.breaker.record(verdictOf(r), Date.now(), probe);
    if (!change && !probe) return null; // the usual case: an answer from a target that is up
    const state = this.stateOf(url, t);
    if (change === 'down') {
      this.log.warn({ handler: this.handler, ...this.env, url: state.url, failures: state.failures, last_status: state.lastHttpStatus, last_error: state.lastError, next_probe_at: state.nextProbeAt },
        `target down: ${this.who} ${state.url} failed ${state.failures} times in a row; its deliveries wait, one probe at a time`);
    } else if (change === 'up') {
      this.log.info({ handler: this.handler, ...this.env, url: state.url },
        `target up: ${this.who} ${state.url} answers again; its waiting deliveries go out`);
    }
    if (change) this.report(state, change);
    else if (probe) this.report(state, 'probe');
    return change;
  }

  /** The state of every target of these URLs (every known one when not given); a URL not tried yet is up. */
  states(urls?: readonly string[]): TargetState[] {
    return (urls ?? [...this.breakers.keys()]).map((url) => {
      const t = this.breakers.get(url);
      return t ? this.stateOf(url, t) : {
        url: redactUrl(url), up: true, since: this.created, failures: 0, probes: 0, nextProbeAt: null, lastHttpStatus: null, lastError: null,
      };
    });
  }

  private stateOf(url: string, t: { breaker: CircuitBreaker; status: number | null; error: string | null }): TargetState {
    const b = t.breaker;
    return {
      url: redactUrl(url), up: b.up, since: new Date(b.since), failures: b.up ? 0 : b.failuresAtChange, probes: b.probes,
      nextProbeAt: b.up || b.probing ? null : new Date(b.nextProbeAt), lastHttpStatus: t.status, lastError: t.error,
    };
  }
}
