import { createHash } from 'node:crypto';
import { Agent, request, type RequestOptions } from 'node:https';
import { connect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { BackupError, errorMessage } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { NativeApiSettings } from './settings.ts';
import { hasCode } from '../error-codes.ts';

/**
 * The appliance's REST API, as the vcsa-native profile's executor. Two dialects, chosen by
 * probing once per client:
 * - "api" (7.0U2 and later): `POST /api/session` → the token as a bare JSON string; paths under
 *   /api; bodies and responses bare; validate is `POST …/backup?action=validate`.
 * - "rest" (6.7, also still served by 7.0): `POST /rest/com/vmware/cis/session` → `{"value":
 *   token}`; paths under /rest; requests wrapped in `{"piece": …}`, responses in `{"value": …}`;
 *   validate is `POST …/backup/validate`.
 * The session id travels only in the `vmware-api-session-id` header and never appears in logs or
 * errors. A 401 logs in again once; a 503 is retried with backoff.
 */
export type ApiDialect = 'api' | 'rest';

export interface LocalizableMessage {
  readonly id?: string;
  readonly default_message?: string;
  readonly args?: readonly string[];
}

export interface BackupJobStatus {
  readonly id: string;
  readonly state: 'FAILED' | 'INPROGRESS' | 'NONE' | 'SUCCEEDED';
  readonly progress?: number;
  readonly messages?: readonly LocalizableMessage[];
  readonly start_time?: string;
  readonly end_time?: string;
}

export interface BackupPart {
  readonly id: string;
  readonly name?: LocalizableMessage;
  readonly description?: LocalizableMessage;
  readonly selected_by_default?: boolean;
  readonly optional?: boolean;
}

export interface ApplianceVersion {
  readonly version: string;
  readonly build: string;
  readonly product?: string;
}

export interface BackupRequest {
  readonly parts: readonly string[];
  readonly backup_password?: string;
  readonly location_type: 'SFTP';
  readonly location: string;
  readonly location_user: string;
  readonly location_password: string;
  readonly comment?: string;
}

/** The appliance's messages as one readable line: what the operator sees in a failure. */
export function quoteMessages(messages: readonly LocalizableMessage[] | undefined): string {
  const texts = (messages ?? []).map((m) => m.default_message ?? m.id ?? '').filter((t) => t !== '');
  return texts.length > 0 ? texts.map((t) => `"${t}"`).join('; ') : '(the appliance gave no message)';
}

interface HttpResult {
  readonly status: number;
  readonly body: unknown;
}

const retryable503 = 5;

export class ApplianceApi {
  readonly #settings: NativeApiSettings;
  readonly #logger: Logger;
  readonly #agent: Agent;
  #dialect: ApiDialect | undefined;
  #session: string | undefined;
  /** Logins after the first: how often the appliance expired our session. */
  relogins = 0;

  constructor(settings: NativeApiSettings, logger: Logger) {
    this.#settings = settings;
    this.#logger = logger;
    this.#agent = pinnedAgent(settings);
  }

  get url(): string {
    return this.#settings.url;
  }

  get dialect(): ApiDialect | undefined {
    return this.#dialect;
  }

  /** Logs in, choosing the dialect on the first call. */
  async login(signal?: AbortSignal): Promise<void> {
    const basic = `Basic ${Buffer.from(`${this.#settings.user}:${this.#settings.password.reveal()}`).toString('base64')}`;
    const tryLogin = async (dialect: ApiDialect): Promise<HttpResult> => {
      for (let attempt = 1; ; attempt++) {
        const res = await this.#http('POST', dialect === 'api' ? '/api/session' : '/rest/com/vmware/cis/session', undefined, { authorization: basic }, signal);
        if (res.status !== 503 || attempt >= retryable503) return res;
        await this.#backoff('login', attempt, signal);
      }
    };
    let dialect = this.#dialect;
    let res: HttpResult;
    if (dialect) res = await tryLogin(dialect);
    else {
      res = await tryLogin('api');
      dialect = 'api';
      // 6.7 has no /api: 404 (or 400 from its reverse proxy). Then it is the /rest dialect.
      if (res.status === 404 || res.status === 400) {
        res = await tryLogin('rest');
        dialect = 'rest';
      }
    }
    if (res.status === 401 || res.status === 403) {
      throw new BackupError('NATIVE_AUTH_FAILED', `${this.url} refused the login of ${this.#settings.user} (HTTP ${res.status}); check targets[].api.user and api.password`, { permanent: true });
    }
    if (res.status < 200 || res.status > 299) throw this.#httpError('login', res);
    const token = dialect === 'rest' ? (res.body as { value?: unknown } | null)?.value : res.body;
    if (typeof token !== 'string' || token === '') throw new BackupError('NATIVE_API_UNEXPECTED', `${this.url}: the session response carried no session id; is this a vCenter appliance?`);
    if (this.#dialect === undefined) this.#logger.info({ api: this.url, dialect }, `appliance API found: ${dialect === 'api' ? '/api (7.0 and later)' : '/rest (6.7)'}`);
    this.#dialect = dialect;
    this.#session = token;
  }

  /** Ends the session; never throws. */
  async logout(): Promise<void> {
    if (this.#session && this.#dialect) {
      await this.#http('DELETE', this.#dialect === 'api' ? '/api/session' : '/rest/com/vmware/cis/session', undefined, { 'vmware-api-session-id': this.#session }).catch(() => undefined);
    }
    this.#session = undefined;
    this.#agent.destroy();
  }

  /**
   * One API call with the session: `path` without the /api or /rest prefix. Wraps and unwraps
   * the 6.7 dialect's bodies. Re-logs in once on 401; retries 503s with backoff.
   */
  async call<T>(method: 'GET' | 'POST', path: string, body: unknown, what: string, signal?: AbortSignal): Promise<T> {
    if (!this.#session || !this.#dialect) await this.login(signal);
    let relogged = false;
    for (let attempt = 1; ; attempt++) {
      const dialect = this.#dialect as ApiDialect;
      const full = `/${dialect}/${path}`;
      const payload = body === undefined ? undefined : dialect === 'rest' ? { piece: body } : body;
      const res = await this.#http(method, full, payload, { 'vmware-api-session-id': this.#session ?? '' }, signal);
      if (res.status === 401 && !relogged) {
        relogged = true;
        this.relogins += 1;
        this.#logger.warn({ api: this.url, what }, 'appliance session expired; logging in again');
        await this.login(signal);
        continue;
      }
      if (res.status === 503 && attempt < retryable503) {
        await this.#backoff(what, attempt, signal);
        continue;
      }
      if (res.status < 200 || res.status > 299) throw this.#httpError(what, res);
      const value = dialect === 'rest' && res.body !== null && typeof res.body === 'object' && 'value' in res.body ? (res.body).value : res.body;
      return value as T;
    }
  }

  async #backoff(what: string, attempt: number, signal?: AbortSignal): Promise<void> {
    const delayMs = Math.min(200 * 2 ** attempt, 5000);
    this.#logger.warn({ api: this.url, what, attempt, delayMs }, 'appliance API busy (503); retrying');
    await sleep(delayMs, undefined, signal ? { signal } : {});
  }

  #httpError(what: string, res: HttpResult): BackupError {
    const b = res.body as { messages?: LocalizableMessage[]; error_type?: string; value?: { messages?: LocalizableMessage[]; error_type?: string } } | null;
    const messages = b?.messages ?? b?.value?.messages;
    const type = b?.error_type ?? b?.value?.error_type;
    const quoted = messages && messages.length > 0 ? `: ${quoteMessages(messages)}` : '';
    if (res.status === 503) return new BackupError('NATIVE_API_UNAVAILABLE', `${this.url} answered ${what} with HTTP 503 (service unavailable) ${retryable503} times${quoted}; the appliance may be starting or busy, the job will be retried`);
    if (res.status === 401 || res.status === 403) {
      return new BackupError('NATIVE_API_FORBIDDEN', `${this.url} refused ${what} (HTTP ${res.status}${type ? `, ${type}` : ''})${quoted}; the user in targets[].api.user needs the Appliance.Backup.Configuration privilege`, { permanent: true });
    }
    return new BackupError('NATIVE_API_ERROR', `${this.url} answered ${what} with HTTP ${res.status}${type ? ` (${type})` : ''}${quoted}`, { permanent: res.status >= 400 && res.status < 500 && res.status !== 404 && res.status !== 409 && res.status !== 429 });
  }

  #http(method: string, path: string, body: unknown, headers: Record<string, string>, signal?: AbortSignal): Promise<HttpResult> {
    const timeoutMs = this.#settings.requestTimeoutSeconds * 1000;
    return new Promise<HttpResult>((resolve, reject) => {
      const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      const url = new URL(path, this.#settings.url);
      const options: RequestOptions = {
        method,
        agent: this.#agent,
        hostname: url.hostname.replace(/^\[|\]$/g, ''),
        port: url.port || 443,
        path: `${url.pathname}${url.search}`,
        headers: { accept: 'application/json', ...(data ? { 'content-type': 'application/json', 'content-length': String(data.length) } : {}), ...headers },
        timeout: timeoutMs,
        ...(signal ? { signal } : {}),
      };
      const req = request(options, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = null;
          if (text !== '') {
            try {
              parsed = JSON.parse(text);
            } catch {
              parsed = { messages: [{ default_message: text.slice(0, 300) }] };
            }
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      });
      req.on('timeout', () => req.destroy(new BackupError('NATIVE_API_TIMEOUT', `${this.url} did not answer ${method} ${url.pathname} within ${timeoutMs / 1000} s (targets[].api.requestTimeoutSeconds)`)));
      req.on('error', (err) => {
        if (err instanceof BackupError || signal?.aborted) return reject(signal?.aborted ? (signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason))) : err);
        reject(
          new BackupError('NATIVE_API_UNREACHABLE', `cannot reach the appliance API at ${this.url}: ${errorMessage(err)}; check targets[].api.url and the network`, {
            permanent: hasCode(err, 'NATIVE_TLS_PIN_MISMATCH') || /certificate|self.signed/i.test(errorMessage(err)),
            cause: err,
          }),
        );
      });
      req.end(data);
    });
  }
}

/** sha256 of a DER certificate, "AB:CD:…" as browsers and `openssl x509 -fingerprint -sha256` print it. */
export function certificateFingerprint(der: Buffer): string {
  return createHash('sha256').update(der).digest('hex').toUpperCase().match(/../g)?.join(':') ?? '';
}

/**
 * An HTTPS agent that trusts what the target's `api.tls` says: a CA (normal verification, with
 * the host name), a pinned certificate fingerprint (the certificate must be exactly that one,
 * whoever signed it: the appliance's self-signed VMCA certificate), or the system's CAs. With a
 * pin the socket is handed to the request only after the check, so nothing — not the login's
 * credentials — is sent to a server that does not hold the pinned certificate.
 */
function pinnedAgent(settings: NativeApiSettings): Agent {
  const { ca, fingerprint } = settings.tls;
  if (!fingerprint) return new Agent({ keepAlive: true, maxSockets: 4, ...(ca ? { ca } : {}) });
  const agent = new Agent({ keepAlive: true, maxSockets: 4 });
  const create = (options: ConnectionOptions, callback: (err: Error | null, socket?: Duplex) => void): undefined => {
    const socket: TLSSocket = connect({ ...options, rejectUnauthorized: false });
    const fail = (err: Error): void => callback(err);
    socket.once('error', fail);
    socket.once('secureConnect', () => {
      socket.off('error', fail);
      const seen = certificateFingerprint(socket.getPeerCertificate().raw);
      if (seen !== fingerprint) {
        socket.destroy();
        const err = new BackupError(
          'NATIVE_TLS_PIN_MISMATCH',
          `${settings.url} presented a certificate with sha256 fingerprint ${seen}, not the pinned ${fingerprint} (targets[].api.tls.fingerprint); if the appliance's certificate was replaced on purpose, pin the new one`,
          { permanent: true },
        );
        callback(err);
        return;
      }
      callback(null, socket);
    });
    return undefined;
  };
  (agent as unknown as { createConnection: typeof create }).createConnection = create;
  return agent;
}
