import type { HttpSettings } from '../../config/snapshot.ts';
import { MASK, redactText } from '../../security/redact.ts';
import { SECRET_ENV_PREFIX } from '../../security/secret-ref.ts';
import { describeProblem, type StepPlan } from './plan.ts';
import { publicSettings, renderStep, stepInput, type StepAnswer, type StepEvent } from './render.ts';

/**
 * The environment of a dry run: every ESPF_SECRET_ variable reads as a
 * placeholder, so no secret is read, and none can be printed.
 */
function dryRunEnv(): NodeJS.ProcessEnv {
  return new Proxy(process.env, {
    get: (t, k) => typeof k === 'string' && k.startsWith(SECRET_ENV_PREFIX) ? `secret-${k}` : t[k as string],
  });
}

/** The answer a dry run assumes for a step it does not send: 200, no body. */
const ASSUMED: StepAnswer = { status: 200, headers: {}, body: null };

/**
 * What `espf handler check` prints for one event: each step's method, URL,
 * headers (secrets masked) and body, as espf run would send them, without
 * sending. A later step is rendered with the answers of the earlier ones
 * assumed (200, no body): what depends on them shows as missing.
 */
export async function dryRun(handler: string, plan: StepPlan, s: HttpSettings, event: StepEvent, label: string): Promise<string> {
  const lines: string[] = [`${event.event_type} (${label}):`];
  const steps = plan.stepsFor(event.event_type);
  if (steps.length === 0) {
    lines.push('  no steps for this type: recorded SKIPPED, nothing sent');
    return lines.join('\n');
  }
  const settings = publicSettings(handler, s);
  const env = dryRunEnv();
  const answers: StepAnswer[] = [];
  for (const step of steps) {
    const input = stepInput(event, settings, steps, answers);
    try {
      const r = await renderStep(step, input, s.url[0] ?? 'http://base.invalid', env);
      const mask = (t: string) => redactText(t, r.secrets);
      lines.push(`  step ${step.number}${step.name ? ` (${step.name})` : ''}: ${r.method} ${mask(`${r.origin}${r.target}`)}`);
      for (const [k, v] of Object.entries(r.headers)) lines.push(`    ${k}: ${mask(v)}`);
      if (s.auth_method !== 'None') lines.push(`    ${s.auth_header.toLowerCase()}: ${MASK} (auth_method ${s.auth_method})`);
      lines.push(r.body === undefined ? '    (no body)' : `    ${mask(r.body)}`);
    } catch (err) {
      lines.push(`  step ${step.number}${step.name ? ` (${step.name})` : ''}: ${step.method} ${step.pathText}: cannot be rendered: ${(err as Error).message}`);
    }
    answers.push(ASSUMED);
  }
  return lines.join('\n');
}

/** Every problem of a plan, one line each. */
export function problemLines(plan: StepPlan): string[] {
  return plan.problems.map(describeProblem);
}
