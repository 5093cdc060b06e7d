import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { ConfigError } from '../errors.ts';

/**
 * What the dashboard checks before routing a request (issue 9 item 4):
 * - the Host header names the address it is bound to (or localhost for loopback, or a name
 *   given with --public-name): a page on another site that rebinds its DNS name to 127.0.0.1
 *   cannot read or drive the dashboard;
 * - a state-changing method (anything but GET, HEAD, OPTIONS) needs configured auth and a
 *   same-origin Origin (or Referer) header: a cross-site form or fetch cannot retry jobs or add
 *   them, even when a browser resends basic auth;
 * - without auth, bull-board is read-only (its write API is refused).
 */
export interface RequestGuard {
  readonly allowedHosts: ReadonlySet<string>;
  readonly authConfigured: boolean;
}

const loopbackNames = ['localhost', '127.0.0.1', '::1', '[::1]'];

export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\./.test(h);
}

/**
 * Checks --host before anything is opened: an IP address or a host name (exit 2 otherwise),
 * and binding beyond loopback without auth is refused unless the operator says so.
 */
export function checkBindAddress(host: string, authConfigured: boolean, insecureNoAuth: boolean): void {
  const valid = isIP(host.replace(/^\[|\]$/g, '')) !== 0 || /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/.test(host);
  if (!valid) throw new ConfigError([`--host: ${JSON.stringify(host)} is neither an IP address nor a host name; e.g. --host 127.0.0.1`]);
  if (!isLoopback(host) && !authConfigured && !insecureNoAuth) {
    throw new ConfigError([
      `--host: ${host} is reachable beyond this machine and the dashboard has no auth; set dashboard.token or dashboard.basicAuth in the config, or pass --insecure-no-auth if something in front of it authenticates (the page shows the fleet and bull-board; writes stay refused without auth)`,
    ]);
  }
}

export function createRequestGuard(bindHost: string, port: number, authConfigured: boolean, publicNames: readonly string[] = []): RequestGuard {
  const names = new Set<string>();
  const add = (name: string): void => {
    const lower = name.toLowerCase();
    names.add(lower);
    names.add(`${lower}:${port}`);
  };
  const bare = bindHost.replace(/^\[|\]$/g, '');
  add(isIP(bare) === 6 ? `[${bare}]` : bare);
  if (isLoopback(bindHost)) loopbackNames.forEach(add);
  if (bare === '0.0.0.0' || bare === '::') {
    // Bound to every address: each of them (and loopback) is "the address it is bound to". A
    // rebinding page's Host is its own name, never one of these.
    loopbackNames.forEach(add);
    for (const addresses of Object.values(networkInterfaces())) {
      for (const a of addresses ?? []) add(a.family === 'IPv6' ? `[${a.address.replace(/%.*$/, '')}]` : a.address);
    }
  }
  publicNames.forEach(add);
  return { allowedHosts: names, authConfigured };
}

export type GuardVerdict = { readonly ok: true } | { readonly ok: false; readonly status: number; readonly reason: string };

const safeMethods = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * `hostHeader`, `origin`, `referer` from the request. Binding to 0.0.0.0 / :: accepts any Host
 * only when auth is configured (then a rebinding page has no credentials anyway); without auth,
 * the machine's own addresses and the --public-name names.
 */
export function checkRequest(guard: RequestGuard, req: { method?: string | undefined; host?: string | undefined; origin?: string | undefined; referer?: string | undefined; path: string }): GuardVerdict {
  const host = (req.host ?? '').toLowerCase();
  const wildcard = guard.allowedHosts.has('0.0.0.0') || guard.allowedHosts.has('[::]');
  if (!(wildcard && guard.authConfigured) && !guard.allowedHosts.has(host)) {
    return { ok: false, status: 421, reason: `Host ${JSON.stringify(req.host ?? '')} is not this dashboard's address; use the address it is bound to (or --public-name NAME)` };
  }
  const method = (req.method ?? 'GET').toUpperCase();
  if (safeMethods.has(method)) return { ok: true };
  if (!guard.authConfigured) {
    return { ok: false, status: 403, reason: 'read-only: changes (retrying or adding jobs) need dashboard.token or dashboard.basicAuth in the config' };
  }
  const from = req.origin ?? (req.referer ? safeOrigin(req.referer) : undefined);
  if (from === undefined || from === 'null') return { ok: false, status: 403, reason: 'a change needs a same-origin Origin or Referer header' };
  const fromHost = safeHost(from);
  if (fromHost === undefined || fromHost !== host) return { ok: false, status: 403, reason: `cross-origin request from ${from} refused` };
  return { ok: true };
}

function safeOrigin(url: string): string | undefined {
  try {
    return new URL(url).origin;
  } catch {
    return undefined;
  }
}

function safeHost(origin: string): string | undefined {
  try {
    return new URL(origin).host.toLowerCase();
  } catch {
    return undefined;
  }
}
