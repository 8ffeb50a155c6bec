// What the example receiver "would provision" for each event type of the espf catalogue
// (README, "Event catalogue"). Replace the strings with calls to your HSS, AAA, PCRF, CRM, ...
//
// Events carry ids only (never passwords, balances or attribute history beyond the
// changed value): a real receiver reads the current state it needs from the billing
// system when it gets the event.

export type Variables = Readonly<Record<string, unknown>>;

export interface EspfEvent {
  event_type: string;
  variables: Variables;
}

function show(v: unknown): string {
  if (v === undefined || v === null) return 'none';
  return typeof v === 'string' ? v : JSON.stringify(v);
}

function serviceAttribute(owner: string, v: Variables): string {
  const attr = `${show(v.service)}.${show(v.name)}`;
  if (v.value === null || v.value === undefined) return `would remove ${attr} (was ${show(v.prev_value)}) on ${owner}`;
  return `would set ${attr} = ${show(v.value)} (was ${show(v.prev_value)}) on ${owner}`;
}

type Mapping = (v: Variables) => string[];

const sub = (v: Variables): string => `HSS subscriber ${show(v.i_account)}`;
const cust = (v: Variables): string => `CRM customer ${show(v.i_customer)}`;

/** One short mapping per event type. Unknown types are acknowledged without provisioning. */
export const MAPPINGS: Readonly<Record<string, Mapping>> = {
  'Account/New': (v) => [`would create ${sub(v)} with id ${show(v.id)} on product ${show(v.i_product)} (customer ${show(v.i_customer)})`],
  'Account/ID/Changed': (v) => [`would rename ${sub(v)} from ${show(v.prev_id)} to ${show(v.id)}`],
  'Account/Password/Changed': (v) => [`would read the new password of account ${show(v.i_account)} from billing and update the AAA server`],
  'Account/ServicePassword/Changed': (v) => [`would read the new service password of account ${show(v.i_account)} from billing and update the self-care portal`],
  'Account/Product/Changed': (v) => [`would move ${sub(v)} from service profile ${show(v.prev_i_product)} to ${show(v.i_product)}`],
  'Account/SIMCardAssignment': (v) => {
    const imsi = v.imsi ?? null;
    const prev = v.prev_imsi ?? null;
    if (imsi !== null && prev !== null) return [`would swap the SIM of ${sub(v)}: detach IMSI ${show(prev)}, attach IMSI ${show(imsi)}`];
    if (imsi !== null) return [`would attach IMSI ${show(imsi)} to ${sub(v)}`];
    if (prev !== null) return [`would detach IMSI ${show(prev)} from ${sub(v)}`];
    return [`would re-read the SIM of ${sub(v)} (no IMSI before or after)`];
  },
  'Account/Blocked': (v) => [`would set ${sub(v)} barred`],
  'Account/Unblocked': (v) => [`would set ${sub(v)} unbarred`],
  'Account/ZeroAvailableFunds': (v) => [`would bar chargeable services of ${sub(v)} (no available funds)`],
  'Account/AvailableFundsAppear': (v) => [`would lift the no-funds bar of ${sub(v)}`],
  'Account/Status/Suspend': (v) => [`would suspend all services of ${sub(v)} (customer ${show(v.i_customer)} suspended)`],
  'Account/Status/Unsuspend': (v) => [`would resume the services of ${sub(v)} (customer ${show(v.i_customer)} unsuspended)`],
  'Account/ServiceAttribute/Changed': (v) => [serviceAttribute(sub(v), v)],
  'Customer/New': (v) => [`would create ${cust(v)}`],
  'Customer/Blocked': (v) => [`would mark ${cust(v)} blocked (its accounts follow as Account/Blocked)`],
  'Customer/Unblocked': (v) => [`would mark ${cust(v)} unblocked (its accounts follow as Account/Unblocked)`],
  'Customer/ZeroAvailableFunds': (v) => [`would flag ${cust(v)} out of funds`],
  'Customer/AvailableFundsAppear': (v) => [`would clear the out-of-funds flag of ${cust(v)}`],
  'Customer/Status/Suspend': (v) => [`would mark ${cust(v)} suspended`],
  'Customer/Status/Unsuspend': (v) => [`would mark ${cust(v)} active again`],
  'Customer/ServiceAttribute/Changed': (v) => [serviceAttribute(cust(v), v)],
  'Product/ServiceAttribute/Changed': (v) => [serviceAttribute(`service profile ${show(v.i_product)}`, v)],
  'ServiceAttribute/Changed': (v) => [serviceAttribute(`${show(v.owner_type)} ${show(v.owner_id)}`, v)],
};

/** The actions for one event; an empty list for a type this receiver does not handle. */
export function describeProvisioning(event: EspfEvent): string[] {
  const mapping = Object.hasOwn(MAPPINGS, event.event_type) ? MAPPINGS[event.event_type] : undefined;
  return mapping ? mapping(event.variables) : [];
}
