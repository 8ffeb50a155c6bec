import type http from 'node:http';
import type { Db } from '../db/connect.ts';
import type { Logger } from '../log/logger.ts';
import type { AddressPolicy } from '../security/address-policy.ts';
import type { Cached } from './settings.ts';
import type { RuleCheck } from './pages/rules.ts';
import type { PageContext } from './layout.ts';
import type { ResendJobs } from './resend-jobs.ts';
import type { ConsoleSettings, Session } from './store.ts';
import { auditRoutes } from './pages/audit.ts';
import { deliveriesRoutes } from './pages/deliveries.ts';
import { handlerRoutes } from './pages/handlers.ts';
import { handlerEnvRoutes } from './pages/handler-envs.ts';
import { jobRoutes } from './pages/jobs.ts';
import { logoutRoutes } from './pages/login.ts';
import { matrixRoutes } from './pages/matrix.ts';
import { overviewRoutes } from './pages/overview.ts';
import { rulesRoutes } from './pages/rules.ts';
import { subscriberRoutes } from './pages/subscribers.ts';

/** What every page of one console shares: the pool, the log, this instance's provisioning.log and resend jobs. */
export interface ConsoleDeps {
  readonly db: Db;
  readonly log: Logger;
  readonly logDir: string;
  readonly jobs: ResendJobs;
  readonly secureCookie: (req: http.IncomingMessage) => boolean;
  /** Addresses "Send a test event" refuses (ESPF_CONSOLE_TEST_EVENT_DENY), or null: none. */
  readonly testEventDeny: AddressPolicy | null;
  /** `espf rule check`, run at most once a minute for the rules page (src/console/pages/rules.ts). */
  readonly ruleCheck: Cached<RuleCheck>;
  /** The scrypt cost of the check for an unknown user name. */
  readonly scryptN: number;
}

/** A request of a logged-in user, as a route's handler gets it. */
export interface RouteRequest {
  readonly req: http.IncomingMessage;
  readonly res: http.ServerResponse;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly settings: ConsoleSettings;
  readonly session: Session;
  readonly sessionId: string;
  /** GET or HEAD (else POST, with a checked CSRF token). */
  readonly get: boolean;
  /** The posted form (empty for GET). */
  readonly form: URLSearchParams;
  /** The groups of the route's pattern. */
  readonly params: readonly string[];
  readonly ctx: PageContext;
  readonly deps: ConsoleDeps;
}

export interface Route {
  /** An exact path, or a pattern whose groups become `params`. */
  readonly path: string | RegExp;
  /** GET (and HEAD), POST, or both. */
  readonly method: 'GET' | 'POST' | 'ANY';
  /** A POST a viewer may make too (logging out); every other POST needs an admin. */
  readonly anyRole?: boolean;
  handle(r: RouteRequest): Promise<void>;
}

/** Every page of the console (docs/console.md, "The pages"), in the order they are tried. */
export const ROUTES: readonly Route[] = [
  ...logoutRoutes,
  ...overviewRoutes,
  ...matrixRoutes,
  ...handlerRoutes,
  ...handlerEnvRoutes,
  ...subscriberRoutes,
  ...deliveriesRoutes,
  ...jobRoutes,
  ...rulesRoutes,
  ...auditRoutes,
];

/** The route for a path and method, with the groups of its pattern; null: none (404). */
export function findRoute(routes: readonly Route[], path: string, get: boolean): { route: Route; params: string[] } | null {
  for (const route of routes) {
    if (route.method !== 'ANY' && (route.method === 'GET') !== get) continue;
    if (typeof route.path === 'string') {
      if (route.path === path) return { route, params: [] };
      continue;
    }
    const m = route.path.exec(path);
    if (m) return { route, params: m.slice(1).map((x) => x ?? '') };
  }
  return null;
}
