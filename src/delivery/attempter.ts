import type { HttpSettings } from '../config/snapshot.ts';
import type { Logger, ProvisioningLog } from '../log/logger.ts';
import { redactUrl } from '../security/redact.ts';
import { CONNECTIONS_PER_ORIGIN, HttpClient, requestBody, type PostResult } from './http-client.ts';
import type { Delivery } from './keyed-queue.ts';
import type { DeliveryObserver } from './observer.ts';
import type { CompiledStep } from './steps/plan.ts';
import { runSteps, type StepsDeps } from './steps/run.ts';
import type { MessageRef } from './standard-webhooks.ts';
import { Targets, type TargetEvent, type TargetState } from './targets.ts';
import { TokenBucket } from './token-bucket.ts';

/**
 * Attempts of one async handler at once: as many as the HTTP client has
 * connections for its URLs (an attempt is on one URL at a time). One more
 * would only wait inside the client as a request already built, and every
 * such object outlives young collections: 256 per handler instead of 128 for
 * one URL cost `espf run` about 7 % more CPU per event in `e2e`
 * (docs/benchmarks.md, "Requests on the wire").
 */
export function maxInFlight(s: Pick<HttpSettings, 'url'>): number {
  return CONNECTIONS_PER_ORIGIN * Math.max(1, s.url.length);
}

/** What one attempt came to. */
export interface AttemptOutcome {
  /** The last answer, or why there was none. */
  readonly last: PostResult;
  /** Every URL of the handler answered 2xx (this attempt or earlier ones). */
  readonly complete: boolean;
  /** It met a target that is down (not sent there, or a probe that failed): the attempt does not count. */
  readonly targetDown: boolean;
}

/** One POST to one URL, and the requests of request steps (src/delivery/http-client.ts; a test gives its own). */
export type Poster = Pick<HttpClient, 'post' | 'close'> & Partial<Pick<HttpClient, 'request'>>;

export interface AttempterDeps {
  readonly instance: string;
  readonly plog: ProvisioningLog;
  readonly log: Logger;
  readonly observer: DeliveryObserver;
  /** A target URL went up or down, or was probed. */
  readonly target: (state: TargetState, event: TargetEvent) => void;
  /** The token bucket has tokens again. */
  readonly tokens: () => void;
  readonly client?: Poster;
  /** Request steps: makes a done step's answer durable before the next step goes (src/delivery/steps/run.ts). */
  readonly checkpoint?: (d: Delivery) => Promise<void>;
  /** The environment whose settings these attempts use (espf.http_handler_envs), for log lines; null: the default row. */
  readonly iEnv?: number | null;
}

const NO_URL: PostResult = { ok: false, status: null, reason: 'handler has no URL', retryAfterMs: null, durationMs: 0 };

function downResult(url: string): PostResult {
  return { ok: false, status: null, reason: `${redactUrl(url)} is down (circuit breaker open): waiting for a probe to succeed`, retryAfterMs: null, durationMs: 0 };
}

/** One attempt's request steps: their URL, and whether the next answer is that of the probe of a down target. */
class StepsAttempt {
  constructor(readonly url: string, public probing: boolean) {}
}

/**
 * The message of one step's request (src/delivery/standard-webhooks.ts): one
 * webhook-id per step (docs/handlers.md), the same for each retry of it; made
 * only when StandardWebhooks reads it.
 */
class StepMessage implements MessageRef {
  constructor(readonly handler: string, private readonly iEvent: number, private readonly step: number) {}
  get event(): { readonly i_event: string } { return { i_event: `${this.iEvent}-${this.step}` }; }
}

/**
 * The attempts of one http handler: how many may start now (one at a time
 * for a sync handler; for an async one, the token bucket and at most 128 per
 * URL on the wire, maxInFlight), the circuit breaker of each target URL
 * (src/delivery/targets.ts: a target that is down gets one probe at a time),
 * and the request(s) of one attempt: the handler's URLs in turn, from the
 * first not yet answered 2xx, each logged to provisioning.log. It reports what
 * the attempt came to; what becomes of the delivery is the outcome policy's
 * (src/delivery/outcome-policy.ts).
 */
export class Attempter {
  private readonly client: Poster;
  private readonly targets: Targets;
  private bucket?: TokenBucket;
  private onWire = 0;
  private probeOnWire = false;
  /** What the request steps of every attempt call back (src/delivery/steps/run.ts): made once. */
  private readonly stepsDeps: StepsDeps<StepsAttempt>;

  constructor(readonly handler: string, caFile: string | null, private readonly deps: AttempterDeps) {
    this.client = deps.client ?? new HttpClient(caFile);
    this.targets = new Targets(handler, deps.log, deps.target, deps.iEnv ?? null);
    this.stepsDeps = {
      handler,
      request: (r, settings, step, d) => {
        if (!this.client.request) throw new Error('this client cannot send request steps');
        return this.client.request(r, settings, new StepMessage(d.item.handler, d.item.event.i_event, step.number), step.answer);
      },
      answered: (d, shown, r, at) => {
        this.logAttempt(d, redactUrl(shown), r, true);
        this.deps.observer.attempt(this.handler, r);
        this.targets.record(at.url, r, at.probing);
        at.probing = false;
      },
      checkpoint: deps.checkpoint ?? (() => Promise.resolve()),
    };
  }

  /** Requests on the wire. */
  get inFlight(): number { return this.onWire; }
  /** A probe is on the wire. */
  get probing(): boolean { return this.probeOnWire; }
  /** Some target of the handler is down. */
  get anyDown(): boolean { return this.targets.anyDown; }

  /** The state of each of these target URLs (a URL not tried yet is up). */
  targetStates(urls: readonly string[] | undefined): TargetState[] { return this.targets.states(urls); }

  /** At start: a target URL (as espf.target_states shows it, credentials hidden) the last run saw down. */
  restoreDown(shownUrl: string, s: HttpSettings, since: Date, probes: number): void {
    const url = s.url.find((u) => redactUrl(u) === shownUrl);
    if (url) this.targets.restoreDown(url, s, since, probes);
  }

  /** The soonest a probe may go to one of these URLs that is down (ms, Infinity while one is on the wire); null when none is down. */
  probeWaitMs(urls: readonly string[]): number | null { return this.targets.probeWaitMs(urls); }

  /**
   * How many of `ready` deliveries may be attempted now: a sync handler one at
   * a time; an async one as the token bucket allows, at most maxInFlight on
   * the wire (when tokens, not slots, are short, more are fetched: `tokens` is called).
   */
  slots(ready: number, s: HttpSettings): number {
    if (!s.async_mode) return this.onWire === 0 ? Math.min(ready, 1) : 0;
    const max = maxInFlight(s);
    if (this.onWire >= max) return 0;
    if (!this.bucket) {
      const bucket = new TokenBucket(s.token_rate, s.token_burstiness);
      bucket.onTokens = this.deps.tokens;
      bucket.onWaited = (ms) => this.deps.observer.bucketWaited(this.handler, ms);
      this.bucket = bucket;
      this.deps.observer.bucketWaited(this.handler, 0);
    }
    const n = this.bucket.takeNow(Math.min(ready, max - this.onWire));
    if (ready > n && this.onWire + n < max) this.bucket.fetch();
    return n;
  }

  /** The settings changed: a bucket of another rate is rebuilt when next needed. */
  reconfigure(s: HttpSettings | undefined): void {
    if (s && this.bucket && (this.bucket.rate !== s.token_rate || this.bucket.burst !== s.token_burstiness)) {
      const old = this.bucket;
      this.bucket = undefined;
      void old.stop();
    }
  }

  /**
   * One attempt of `d` with settings `s` (null: disabled, or no URL): its
   * URLs from the first not yet answered 2xx, until one fails. A target that
   * is down gets no request unless this is the probe (`probe`); meeting one
   * makes the attempt not count.
   */
  async attempt(d: Delivery, s: HttpSettings | null, probe: boolean, steps: readonly CompiledStep[] | null = null): Promise<AttemptOutcome> {
    this.onWire++;
    if (probe) this.probeOnWire = true;
    this.deps.observer.inFlight(this.handler, this.onWire);
    d.attempts++;
    d.firstAttemptAt ??= new Date();
    let last = NO_URL;
    let targetDown = false;
    if (s && steps) {
      // The request steps (src/delivery/steps/run.ts), to the handler's one URL: the circuit breaker
      // as for a POST, the first request of the sequence is the probe of a target that is down.
      const url = s.url[0]!;
      const atDown = this.mayGo(url, s, probe);
      if (atDown === null) {
        last = downResult(url);
        targetDown = true;
      } else {
        const at = new StepsAttempt(url, atDown);
        last = await runSteps(d, steps, s, this.stepsDeps, at);
        if (at.probing) this.targets.record(url, last, true); // the probe never went (a step could not be rendered): it failed
        targetDown = !last.ok && atDown && !this.targets.breaker(url, s).up;
      }
    } else if (s) {
      d.body ??= requestBody(d.item.event, s.event_names);
      const urls = s.url;
      while (d.urlsDone < urls.length) {
        const url = urls[d.urlsDone]!;
        const atDown = this.mayGo(url, s, probe);
        if (atDown === null) {
          last = downResult(url);
          targetDown = true;
          break;
        }
        last = await this.client.post(url, d.body, s, d.item);
        this.logAttempt(d, url, last);
        this.deps.observer.attempt(this.handler, last);
        this.targets.record(url, last, atDown);
        if (!last.ok) {
          targetDown = atDown && !this.targets.breaker(url, s).up;
          break;
        }
        d.urlsDone++;
      }
    }
    if (targetDown) d.attempts--;
    this.onWire--;
    if (probe) this.probeOnWire = false;
    this.deps.observer.inFlight(this.handler, this.onWire);
    return { last, complete: last.ok || (s !== null && steps === null && d.urlsDone >= s.url.length), targetDown };
  }

  /**
   * Whether a request may go to `url` now: null when its target is down and
   * this is not the probe (on the wire when the target went down, or a second
   * down target: not sent); else whether it is the probe of a down target
   * (started here).
   */
  private mayGo(url: string, s: HttpSettings, probe: boolean): boolean | null {
    const breaker = this.targets.breaker(url, s);
    if (breaker.up) return false;
    if (!probe || breaker.probing) return null;
    breaker.startProbe();
    return true;
  }

  /** `url` as shown (credentials hidden); a POST's is redacted here. */
  private logAttempt(d: Delivery, url: string, r: PostResult, shown = false): void {
    const { item } = d;
    this.deps.plog.attempt({
      instance: this.deps.instance, handler: this.handler, i_event: item.event.i_event, event_type: item.event.event_type,
      i_account: item.iAccount, url: shown ? url : redactUrl(url), attempt: d.attempts, status: r.status,
      error: r.ok ? null : r.reason, duration_ms: r.durationMs,
    });
  }

  /** No more attempts: the bucket stops and the connections close. */
  async close(): Promise<void> {
    await this.bucket?.stop();
    await this.client.close();
  }
}
