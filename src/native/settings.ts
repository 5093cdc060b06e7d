import { readFileSync } from 'node:fs';
import type { Secret, SecretRef } from '../config/secret.ts';

/**
 * What a vcsa-native target carries after the config is loaded: its REST API (the profile's
 * "executor") and the options of its backup job. Secrets stay `Secret`s until the one request
 * that sends them.
 */
export const nativeProfileName = 'vcsa-native';

export interface NativeApiSettings {
  readonly type: 'vcsa-api';
  /** https://host[:port], no path. */
  readonly url: string;
  readonly user: string;
  readonly password: Secret;
  readonly tls: { readonly ca?: string; readonly fingerprint?: string };
  readonly requestTimeoutSeconds: number;
}

export interface NativeTargetOptions {
  /** Every part to back up, `common` first. */
  readonly parts: readonly string[];
  readonly backupPassword?: Secret;
}

export interface NativeReceiverSettings {
  readonly listenHost: string;
  readonly listenPort: number;
  /** Host the appliance connects to, and the port when it differs from the bound one (NAT). */
  readonly advertiseHost: string;
  readonly advertisePort?: number;
}

/** host:port → parts; IPv6 in brackets. */
export function splitHostPort(text: string): { host: string; port?: number } {
  const m = /^(\[([0-9a-fA-F:]+)\]|[^:\s/]+)(?::(\d{1,5}))?$/.exec(text);
  if (!m) throw new Error(`expected host:port, got ${JSON.stringify(text)}`);
  const host = m[2] ?? m[1] ?? '';
  return m[3] === undefined ? { host } : { host, port: Number(m[3]) };
}

/**
 * VMware's rules for a backup password (the appliance refuses others only once the job runs):
 * 8–20 visible ASCII characters with at least one upper-case letter, lower-case letter, digit and
 * special character. Returns what is wrong, never the value.
 */
export function backupPasswordProblem(value: string): string | undefined {
  if (value.length < 8 || value.length > 20) return `has ${value.length} characters; VMware requires 8 to 20`;
  if (!/^[\x21-\x7e]+$/.test(value)) return 'must be visible ASCII characters only (no spaces or accented letters)';
  const missing = [
    [/[A-Z]/, 'an upper-case letter'],
    [/[a-z]/, 'a lower-case letter'],
    [/[0-9]/, 'a digit'],
    [/[^A-Za-z0-9]/, 'a special character'],
  ]
    .filter(([re]) => !(re as RegExp).test(value))
    .map(([, what]) => what as string);
  return missing.length > 0 ? `lacks ${missing.join(', ')} (VMware requires upper, lower, digit and special)` : undefined;
}

interface RawApi {
  readonly url: string;
  readonly user: string;
  readonly password: SecretRef;
  readonly tls?: { readonly ca?: string | undefined; readonly fingerprint?: string | undefined } | undefined;
  readonly requestTimeoutSeconds: number;
}

/** Resolves a target's `api` block; problems go to `issues` with the field's path. */
export function resolveNativeApi(
  api: RawApi,
  at: string,
  secret: (ref: SecretRef | undefined, field: string) => Secret | undefined,
  issues: string[],
): NativeApiSettings | undefined {
  const password = secret(api.password, `${at}.api.password`);
  let ca: string | undefined;
  if (api.tls?.ca !== undefined) {
    if (api.tls.ca.includes('-----BEGIN CERTIFICATE-----')) ca = api.tls.ca;
    else {
      try {
        ca = readFileSync(api.tls.ca, 'utf8');
      } catch (err) {
        issues.push(`${at}.api.tls.ca: cannot read ${api.tls.ca} (${(err as NodeJS.ErrnoException).code ?? 'error'}); give the path of the appliance's CA certificate (PEM) or the PEM itself`);
      }
    }
  }
  if (api.tls?.ca !== undefined && api.tls.fingerprint !== undefined) {
    issues.push(`${at}.api.tls: set ca or fingerprint, not both`);
  }
  let url: URL | undefined;
  try {
    url = new URL(api.url);
  } catch {
    issues.push(`${at}.api.url: not a URL`);
  }
  if (url && url.pathname !== '/' && url.pathname !== '') issues.push(`${at}.api.url: give the appliance's address only (https://vcsa.example.com), not a path`);
  if (!password || !url) return undefined;
  return {
    type: 'vcsa-api',
    url: url.origin,
    user: api.user,
    password,
    tls: { ...(ca ? { ca } : {}), ...(api.tls?.fingerprint ? { fingerprint: api.tls.fingerprint.toUpperCase() } : {}) },
    requestTimeoutSeconds: api.requestTimeoutSeconds,
  };
}

/** The job options of a native target: the global native section, overridden per target. */
export function resolveNativeOptions(
  global: { readonly parts: readonly string[]; readonly backupPassword?: SecretRef | undefined },
  own: { readonly parts?: readonly string[] | undefined; readonly backupPassword?: SecretRef | undefined } | undefined,
  at: string,
  secret: (ref: SecretRef | undefined, field: string) => Secret | undefined,
  issues: string[],
): NativeTargetOptions {
  const extra = own?.parts ?? global.parts;
  const parts = ['common', ...extra.filter((p) => p !== 'common')];
  const field = own?.backupPassword !== undefined ? `${at}.native.backupPassword` : 'native.backupPassword';
  const password = secret(own?.backupPassword ?? global.backupPassword, field);
  if (password) {
    const problem = backupPasswordProblem(password.reveal());
    if (problem) issues.push(`${field}: ${problem}`);
  }
  return { parts: [...new Set(parts)], ...(password ? { backupPassword: password } : {}) };
}

/** native.receiver → where to bind and what to tell the appliance. */
export function resolveReceiver(raw: { readonly listen: string; readonly advertise?: string | undefined }, issues: string[], needed: boolean): NativeReceiverSettings {
  const listen = splitHostPort(raw.listen);
  const advertise = raw.advertise ? splitHostPort(raw.advertise) : undefined;
  const wildcard = listen.host === '0.0.0.0' || listen.host === '::';
  if (needed && !advertise && wildcard) {
    issues.push('native.receiver.advertise: required when native.receiver.listen binds every address; give the host (and port, behind NAT) the appliances can reach, e.g. backup01.example.com');
  }
  return {
    listenHost: listen.host,
    listenPort: listen.port ?? 0,
    advertiseHost: advertise?.host ?? listen.host,
    ...(advertise?.port !== undefined ? { advertisePort: advertise.port } : {}),
  };
}
