// The states of a row of espf.event_deliveries: the one list the TypeScript
// side spells them from. The database's own list is the CHECK constraint
// event_deliveries_state_check (migrations/0002_espf.sql, widened by
// migrations/0010_event_rules.sql and migrations/0015_request_steps.sql); test/db-schema.test.ts compares the two.

/** Every delivery state, as espf.event_deliveries.state holds it. */
export const DELIVERY_STATES = ['PENDING', 'RETRY', 'DELIVERED', 'FAILED', 'DISPATCHED', 'SUPERSEDED', 'SKIPPED'] as const;

export type DeliveryState = (typeof DELIVERY_STATES)[number];

/** A delivery that still waits for an attempt (the sender's waiting pages, the backlog). */
export const WAITING_STATES = ['PENDING', 'RETRY'] as const satisfies readonly DeliveryState[];

/** Finished by an http handler: what espf.resend re-queues (sql/700_resend.sql). */
export const RESENDABLE_STATES = ['DELIVERED', 'FAILED'] as const satisfies readonly DeliveryState[];

/** A row that will not change again unless it is re-sent (sql/600_maintenance.sql purges these). */
export const FINAL_STATES = ['DELIVERED', 'FAILED', 'DISPATCHED', 'SUPERSEDED', 'SKIPPED'] as const satisfies readonly DeliveryState[];

const FINAL: ReadonlySet<DeliveryState> = new Set(FINAL_STATES);

/** Whether a row in this state is finished (has its finished_at). */
export function isFinalState(s: DeliveryState): boolean {
  return FINAL.has(s);
}

export function isDeliveryState(s: string): s is DeliveryState {
  return (DELIVERY_STATES as readonly string[]).includes(s);
}
