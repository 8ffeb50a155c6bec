import { BlockList, isIP, type LookupFunction } from 'node:net';
import dns from 'node:dns';

/**
 * Which network addresses "Send a test event" may reach (docs/security.md,
 * "Test events and internal addresses"). The deny list is opt-in
 * (ESPF_CONSOLE_TEST_EVENT_DENY, src/config/env.ts): addresses or networks
 * (CIDR) and the names `loopback`, `private` and `link-local`. It is checked on
 * the address a host name resolves to, at connection time (the lookup the
 * socket uses), so a name that resolves elsewhere the second time gains nothing.
 */

/** The named groups of the deny list, and the addresses whose answers the console shows as a status only. */
export const NAMED_NETWORKS: Readonly<Record<string, readonly string[]>> = {
  loopback: ['127.0.0.0/8', '::1/128', '0.0.0.0/8', '::/128'],
  private: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', 'fc00::/7'],
  'link-local': ['169.254.0.0/16', 'fe80::/10'],
};

export class AddressPolicy {
  private readonly list = new BlockList();

  /** `entries`: addresses, CIDR networks or the names of NAMED_NETWORKS (checked by parseDenyList). */
  constructor(readonly entries: readonly string[]) {
    for (const e of entries) {
      for (const net of NAMED_NETWORKS[e] ?? [e]) {
        const [addr, bits] = net.split('/') as [string, string | undefined];
        const type = isIP(addr) === 6 ? 'ipv6' : 'ipv4';
        if (bits === undefined) this.list.addAddress(addr, type); else this.list.addSubnet(addr, Number(bits), type);
      }
    }
  }

  /** Whether `address` (an IP address) is refused. An IPv4-mapped IPv6 address counts as its IPv4 address. */
  denies(address: string): boolean {
    const plain = address.toLowerCase().startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
    const family = isIP(plain);
    return family !== 0 && this.list.check(plain, family === 6 ? 'ipv6' : 'ipv4');
  }

  /**
   * A `lookup` for net.connect / tls.connect that resolves as usual and fails with
   * ESPF_ADDRESS_DENIED when any address of the name is refused.
   */
  lookup(): LookupFunction {
    return ((hostname: string, options: dns.LookupOptions, callback: (...a: unknown[]) => void) => {
      dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
        if (err) return callback(err);
        const refused = addresses.find((a) => this.denies(a.address));
        if (refused) return callback(deniedError(hostname, refused.address));
        if (options.all) return callback(null, addresses);
        return callback(null, addresses[0]!.address, addresses[0]!.family);
      });
    }) as unknown as LookupFunction;
  }
}

export function deniedError(host: string, address: string): Error {
  const what = host === address ? address : `${host} (${address})`;
  return Object.assign(new Error(`${what} is an address ESPF_CONSOLE_TEST_EVENT_DENY refuses: no test event was sent`), { code: 'ESPF_ADDRESS_DENIED' });
}

/** Loopback, private and link-local addresses: the console shows a status only for their answers. */
export const INTERNAL = new AddressPolicy(['loopback', 'private', 'link-local']);

/** The entries of ESPF_CONSOLE_TEST_EVENT_DENY (comma-separated), or the first that is none of the allowed forms. */
export function parseDenyList(v: string): { entries: string[]; bad: string | null } {
  const entries = v.split(',').map((s) => s.trim()).filter(Boolean);
  for (const e of entries) {
    if (NAMED_NETWORKS[e]) continue;
    const [addr, bits, more] = e.split('/');
    const family = isIP(addr ?? '');
    const max = family === 6 ? 128 : 32;
    if (family === 0 || more !== undefined || (bits !== undefined && !(/^\d{1,3}$/.test(bits) && Number(bits) <= max))) return { entries, bad: e };
  }
  return { entries, bad: null };
}
