import { createHash, timingSafeEqual } from 'node:crypto';
import type { Config } from '../config/load.ts';
import { resolveSecret, type Secret } from '../config/secret.ts';
import { ConfigError } from '../errors.ts';

/**
 * Dashboard access: an optional bearer token (for Prometheus and scripts) and optional basic
 * auth (for browsers, which resend it on every fetch). With neither configured everything is
 * open, which is why the dashboard binds to 127.0.0.1 unless told otherwise.
 */
export interface DashboardAuth {
  readonly token?: Secret;
  readonly basic?: { readonly user: string; readonly password: Secret };
}

export function resolveDashboardAuth(config: Pick<Config, 'dashboard'>, env: NodeJS.ProcessEnv = process.env): DashboardAuth {
  const { token, basicAuth } = config.dashboard;
  try {
    return {
      ...(token !== undefined ? { token: resolveSecret(token, 'dashboard.token', env) } : {}),
      ...(basicAuth !== undefined ? { basic: { user: basicAuth.user, password: resolveSecret(basicAuth.password, 'dashboard.basicAuth.password', env) } } : {}),
    };
  } catch (err) {
    throw new ConfigError([(err as Error).message]);
  }
}

export function authRequired(auth: DashboardAuth): boolean {
  return auth.token !== undefined || auth.basic !== undefined;
}

/** Compares digests, so neither the content nor the length of the secret leaks through timing. */
function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/** Checks an Authorization header against whichever methods are configured. */
export function isAuthorized(header: string | undefined, auth: DashboardAuth): boolean {
  if (!authRequired(auth)) return true;
  if (header === undefined) return false;
  const space = header.indexOf(' ');
  if (space < 0) return false;
  const scheme = header.slice(0, space).toLowerCase();
  const value = header.slice(space + 1).trim();
  if (scheme === 'bearer' && auth.token) return sameSecret(value, auth.token.reveal());
  if (scheme === 'basic' && auth.basic) {
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) return false;
    const userOk = sameSecret(decoded.slice(0, colon), auth.basic.user);
    const passOk = sameSecret(decoded.slice(colon + 1), auth.basic.password.reveal());
    return userOk && passOk;
  }
  return false;
}

/** The WWW-Authenticate header of a 401: basic when configured, so browsers prompt for it. */
export function authChallenge(auth: DashboardAuth): string {
  return auth.basic ? 'Basic realm="vcsa-backup", charset="UTF-8"' : 'Bearer realm="vcsa-backup"';
}
