import { execFile } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import ssh2, { type SFTPWrapper } from 'ssh2';
import { certificateFingerprint } from '../native/api-client.ts';
import { X509Certificate } from 'node:crypto';

const run = promisify(execFile);

/**
 * A simulated vCenter Server Appliance 7.0/8.0 (or 6.7) as far as its file-based backup goes:
 * the documented REST shapes over HTTPS with a self-signed certificate, sessions, parts,
 * validate, job start/status/list/cancel, both the /api dialect (7.0U2+) and the 6.7 /rest one
 * (`{"value": …}` responses, `{"piece": …}` requests). A started job connects to the given SFTP
 * location as a real SFTP client (ssh2) and uploads archive files of configurable size and the
 * backup metadata JSON, reporting progress as it goes.
 *
 * Faults, for tests and the demo (`setFault`): wrong location credentials (the appliance sends a
 * wrong password: validate and the job fail with its message), an unreachable location, a job
 * stuck INPROGRESS, sessions expiring once mid-job, 503s for the next N requests, and a
 * transfer cut half way (the connection drops in the middle of the largest file).
 */
export type NativeFault =
  | { readonly kind: 'none' }
  | { readonly kind: 'wrong-location-credentials' }
  | { readonly kind: 'unreachable-location' }
  | { readonly kind: 'stuck' }
  | { readonly kind: 'session-expiry' }
  | { readonly kind: 'unavailable'; readonly count: number }
  | { readonly kind: 'transfer-cut' };

export interface NativeApplianceOptions {
  readonly name: string;
  /** "8.0.2.00100" (default), "7.0.3.01000", or "6.7.0.51000" (then only the /rest dialect is served). */
  readonly version?: string;
  readonly build?: string;
  readonly user?: string;
  readonly password?: string;
  readonly host?: string;
  readonly port?: number;
  /** Bytes of each archive file (the largest, database_full_backup, is 4× this). Default 64 KiB. */
  readonly archiveBytes?: number;
  /** Upload chunk size; progress moves per chunk. */
  readonly chunkBytes?: number;
  /** A shared certificate (tests start many appliances: one key pair for all is enough). */
  readonly tls?: SimTls;
}

export interface SimTls {
  readonly key: string;
  readonly cert: string;
  /** sha256 fingerprint, "AB:CD:…". */
  readonly fingerprint: string;
}

export interface SimJobRecord {
  readonly id: string;
  state: 'INPROGRESS' | 'SUCCEEDED' | 'FAILED';
  progress: number;
  messages: { id: string; default_message: string; args: string[] }[];
  readonly start_time: string;
  end_time?: string;
  readonly parts: readonly string[];
  readonly location: string;
  readonly encrypted: boolean;
  cancelled: boolean;
  /** Files written to the location, with their sha256: what a correct backup must hold. */
  readonly files: { name: string; bytes: number; sha256: string }[];
}

export interface NativeAppliance {
  readonly name: string;
  readonly url: string;
  readonly user: string;
  readonly password: string;
  readonly version: string;
  readonly build: string;
  readonly tls: SimTls;
  readonly jobs: readonly SimJobRecord[];
  /** Requests answered with 401 because a session was unknown or expired. */
  readonly stats: { logins: number; unauthorized: number; unavailable: number; requests: number; sessionIdsIssued: string[]; locationPasswords: string[] };
  setFault(fault: NativeFault): void;
  /**
   * false: the API stops listening and drops its connections (a network partition, or the
   * appliance's reverse proxy down); running jobs go on. true: it listens again on the same port.
   */
  setReachable(reachable: boolean): Promise<void>;
  /** Cancels running jobs, waits for them, closes the API. */
  stop(): Promise<void>;
}

export async function generateSimTls(): Promise<SimTls> {
  const dir = await mkdtemp(join(tmpdir(), 'vcsa-native-tls-'));
  try {
    await run('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '3650',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    ]);
    const key = await readFile(join(dir, 'key.pem'), 'utf8');
    const cert = await readFile(join(dir, 'cert.pem'), 'utf8');
    return { key, cert, fingerprint: certificateFingerprint(new X509Certificate(cert).raw) };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const parts = [
  { id: 'common', name: 'Common', description: 'Inventory and configuration', optional: false, selected_by_default: true },
  { id: 'seat', name: 'Stats, Events, and Tasks', description: 'Historical data', optional: true, selected_by_default: false },
];

/** Archive files per part, and their size relative to archiveBytes. */
const partFiles: Record<string, { name: string; scale: number }[]> = {
  common: [
    { name: 'config_files.tar.gz', scale: 1 },
    { name: 'lotus_backup.tar.gz', scale: 1 },
    { name: 'database_full_backup.tar.gz', scale: 4 },
    { name: 'rbd_config.tar.gz', scale: 0.25 },
  ],
  seat: [{ name: 'stats_events_tasks.tar.gz', scale: 2 }],
};
export const simMetadataFile = 'backup-metadata.json';

function msg(id: string, text: string, args: string[] = []): { id: string; default_message: string; args: string[] } {
  return { id, default_message: text, args };
}

export async function startNativeAppliance(options: NativeApplianceOptions): Promise<NativeAppliance> {
  const version = options.version ?? '8.0.2.00100';
  const build = options.build ?? (version.startsWith('6.7') ? '15976714' : version.startsWith('7.') ? '19480866' : '22617221');
  const restOnly = version.startsWith('6.');
  const user = options.user ?? 'administrator@vsphere.local';
  const password = options.password ?? `Sim-${randomBytes(6).toString('hex')}!`;
  const archiveBytes = options.archiveBytes ?? 64 * 1024;
  const chunkBytes = options.chunkBytes ?? 32 * 1024;
  const tls = options.tls ?? (await generateSimTls());
  const sessions = new Map<string, number>();
  const jobs: SimJobRecord[] = [];
  const stats = { logins: 0, unauthorized: 0, unavailable: 0, requests: 0, sessionIdsIssued: [] as string[], locationPasswords: [] as string[] };
  let fault: NativeFault = { kind: 'none' };
  let unavailableLeft = 0;
  let expireOnceArmed = false;
  const running = new Set<Promise<void>>();

  const send = (res: ServerResponse, status: number, body: unknown): void => {
    const text = body === undefined ? '' : JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
  const sendError = (res: ServerResponse, dialect: 'api' | 'rest', status: number, type: string, text: string): void => {
    const messages = [msg(`com.vmware.vapi.std.errors.${type.toLowerCase()}`, text)];
    send(res, status, dialect === 'api' ? { error_type: type, messages } : { type: `com.vmware.vapi.std.errors.${type.toLowerCase()}`, value: { messages } });
  };
  const wrap = (dialect: 'api' | 'rest', value: unknown): unknown => (dialect === 'rest' ? { value } : value);

  const readBody = async (req: IncomingMessage): Promise<unknown> => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    return text === '' ? undefined : (JSON.parse(text) as unknown);
  };

  const connectLocation = (location: string, locUser: string, locPassword: string): Promise<{ client: ssh2.Client; sftp: SFTPWrapper; path: string }> => {
    const url = new URL(location);
    return new Promise((resolve, reject) => {
      const client = new ssh2.Client();
      client.on('error', (err) => reject(err));
      client.on('ready', () => {
        client.sftp((err, sftp) => (err ? reject(err) : resolve({ client, sftp, path: decodeURIComponent(url.pathname) })));
      });
      const port = fault.kind === 'unreachable-location' ? 9 : Number(url.port || 22);
      client.connect({
        host: url.hostname.replace(/^\[|\]$/g, ''),
        port,
        username: locUser,
        password: fault.kind === 'wrong-location-credentials' ? `${locPassword}x` : locPassword,
        readyTimeout: 10_000,
        // Appliances accept the location's host key without pinning; so does the simulation.
        hostVerifier: () => true,
      });
    });
  };

  const locationProblem = (err: unknown, location: string, locUser: string): string => {
    const text = err instanceof Error ? err.message : String(err);
    if (/authentication/i.test(text)) return `Authentication failed for user ${locUser} on location ${location}. Check the user name and password.`;
    if (/ECONNREFUSED|ETIMEDOUT|EHOSTUNREACH|timed out/i.test(text)) return `Location ${location} is not reachable: ${text}.`;
    return `Cannot use location ${location}: ${text}.`;
  };

  const sftpCall = <T>(fn: (cb: (err: Error | null | undefined, value?: T) => void) => void): Promise<T> =>
    new Promise((resolve, reject) => fn((err, value) => (err ? reject(err) : resolve(value as T))));

  const runJob = async (job: SimJobRecord, locUser: string, locPassword: string, backupPassword: string | undefined): Promise<void> => {
    const fail = (text: string): void => {
      job.state = 'FAILED';
      job.messages.push(msg('com.vmware.applmgmt.err_backup_failed', text));
      job.end_time = new Date().toISOString();
    };
    let conn: { client: ssh2.Client; sftp: SFTPWrapper; path: string } | undefined;
    try {
      conn = await connectLocation(job.location, locUser, locPassword);
    } catch (err) {
      fail(locationProblem(err, job.location, locUser));
      return;
    }
    const { client, sftp, path } = conn;
    try {
      job.progress = 2;
      await sftpCall<void>((cb) => sftp.mkdir(path, (err) => cb(err && !/exist|failure/i.test(err.message) ? err : null)));
      const files = job.parts.flatMap((p) => partFiles[p] ?? []).map((f) => ({ name: f.name, bytes: Math.max(1, Math.round(archiveBytes * f.scale)) }));
      const total = files.reduce((s, f) => s + f.bytes, 0);
      const biggest = files.reduce((a, b) => (b.bytes > a.bytes ? b : a));
      let sent = 0;
      for (const f of files) {
        const handle = await sftpCall<Buffer>((cb) => sftp.open(`${path}/${f.name}`, 'w', cb));
        const hash = createHash('sha256');
        for (let offset = 0; offset < f.bytes; offset += chunkBytes) {
          if (job.cancelled) throw new Error('cancelled');
          const chunk = randomBytes(Math.min(chunkBytes, f.bytes - offset));
          if (fault.kind === 'transfer-cut' && f === biggest && offset >= f.bytes / 2) {
            client.destroy();
            fail(`Transfer of ${f.name} to ${job.location} failed: connection lost after ${offset} of ${f.bytes} bytes.`);
            return;
          }
          await sftpCall<void>((cb) => sftp.write(handle, chunk, 0, chunk.length, offset, (err) => cb(err)));
          hash.update(chunk);
          sent += chunk.length;
          job.progress = Math.min(95, 2 + Math.floor((sent / total) * 93));
        }
        await sftpCall<void>((cb) => sftp.close(handle, (err) => cb(err)));
        job.files.push({ name: f.name, bytes: f.bytes, sha256: hash.digest('hex') });
        if (fault.kind === 'stuck' && job.files.length === 1) {
          // Hangs like an appliance whose backup process died without telling the API.
          while (!job.cancelled) await new Promise((r) => setTimeout(r, 50));
          throw new Error('cancelled');
        }
      }
      const metadata = {
        SchemaVersion: 1,
        ProductName: 'VMware vCenter Server',
        ApplianceName: options.name,
        Version: version,
        Build: build,
        BackupJobId: job.id,
        BackupTime: job.start_time,
        Parts: job.parts,
        EncryptionEnabled: backupPassword !== undefined,
        Files: job.files.map((f) => ({ Name: f.name, Size: f.bytes, Sha256: f.sha256 })),
      };
      const bytes = Buffer.from(JSON.stringify(metadata, null, 2));
      const handle = await sftpCall<Buffer>((cb) => sftp.open(`${path}/${simMetadataFile}`, 'w', cb));
      await sftpCall<void>((cb) => sftp.write(handle, bytes, 0, bytes.length, 0, (err) => cb(err)));
      await sftpCall<void>((cb) => sftp.close(handle, (err) => cb(err)));
      job.files.push({ name: simMetadataFile, bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') });
      job.progress = 100;
      job.state = 'SUCCEEDED';
      job.messages.push(msg('com.vmware.applmgmt.backup_succeeded', 'Backup job completed successfully.'));
      job.end_time = new Date().toISOString();
    } catch (err) {
      if (job.cancelled) {
        job.state = 'FAILED';
        job.messages.push(msg('com.vmware.applmgmt.backup_canceled', 'Backup job was canceled.'));
        job.end_time = new Date().toISOString();
      } else if (job.state === 'INPROGRESS') {
        fail(`Transfer to ${job.location} failed: ${err instanceof Error ? err.message : String(err)}.`);
      }
    } finally {
      client.end();
    }
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    stats.requests += 1;
    const url = new URL(req.url ?? '/', 'https://sim');
    const path = url.pathname;
    const dialect: 'api' | 'rest' = path.startsWith('/rest/') ? 'rest' : 'api';
    if (dialect === 'api' && (restOnly || !path.startsWith('/api/'))) return sendError(res, 'api', 404, 'NOT_FOUND', `No such resource: ${path}`);
    if (unavailableLeft > 0) {
      unavailableLeft -= 1;
      stats.unavailable += 1;
      return sendError(res, dialect, 503, 'SERVICE_UNAVAILABLE', 'The service is temporarily unavailable. Please try again later.');
    }
    const sessionPath = dialect === 'api' ? '/api/session' : '/rest/com/vmware/cis/session';
    if (path === sessionPath && req.method === 'POST') {
      const auth = req.headers.authorization ?? '';
      const decoded = auth.startsWith('Basic ') ? Buffer.from(auth.slice(6), 'base64').toString('utf8') : '';
      if (decoded !== `${user}:${password}`) return sendError(res, dialect, 401, 'UNAUTHENTICATED', 'Authentication required.');
      const token = randomUUID().replace(/-/g, '');
      sessions.set(token, Date.now());
      stats.logins += 1;
      stats.sessionIdsIssued.push(token);
      return send(res, dialect === 'api' ? 201 : 200, wrap(dialect, token));
    }
    const token = req.headers['vmware-api-session-id'];
    if (typeof token !== 'string' || !sessions.has(token)) {
      stats.unauthorized += 1;
      return sendError(res, dialect, 401, 'UNAUTHENTICATED', 'This method requires authentication.');
    }
    if (expireOnceArmed && jobs.some((j) => j.state === 'INPROGRESS') && path.includes('/backup/job/')) {
      expireOnceArmed = false;
      sessions.clear();
      stats.unauthorized += 1;
      return sendError(res, dialect, 401, 'UNAUTHENTICATED', 'This method requires authentication.');
    }
    if (path === sessionPath && req.method === 'DELETE') {
      sessions.delete(token);
      return send(res, dialect === 'api' ? 204 : 200, undefined);
    }
    const base = `/${dialect}/appliance`;
    const rawBody = req.method === 'POST' ? await readBody(req).catch(() => null) : undefined;
    const body = (dialect === 'rest' && rawBody && typeof rawBody === 'object' && 'piece' in rawBody ? (rawBody).piece : rawBody) as Record<string, unknown> | undefined;

    if (req.method === 'GET' && path === `${base}/system/version`) {
      return send(res, 200, wrap(dialect, { product: 'VMware vCenter Server', type: 'vCenter Server with an embedded Platform Services Controller', version, build, releasedate: '2024-01-01', install_time: '2024-01-02T00:00:00Z' }));
    }
    if (req.method === 'GET' && path === `${base}/recovery/backup/parts`) {
      return send(res, 200, wrap(dialect, parts.map((p) => ({ id: p.id, name: msg(`part.${p.id}`, p.name), description: msg(`part.${p.id}.d`, p.description), optional: p.optional, selected_by_default: p.selected_by_default }))));
    }
    const isValidate = dialect === 'api' ? path === `${base}/recovery/backup` && url.searchParams.get('action') === 'validate' : path === `${base}/recovery/backup/validate`;
    if (req.method === 'POST' && isValidate) {
      const problem = requestProblem(body);
      if (problem) return sendError(res, dialect, 400, 'INVALID_ARGUMENT', problem);
      const b = body as { location: string; location_user: string; location_password: string };
      stats.locationPasswords.push(b.location_password);
      try {
        const conn = await connectLocation(b.location, b.location_user, b.location_password);
        conn.client.end();
        return send(res, 200, wrap(dialect, { status: 'OK', messages: [] }));
      } catch (err) {
        return send(res, 200, wrap(dialect, { status: 'ERROR', messages: [msg('com.vmware.applmgmt.err_location', locationProblem(err, b.location, b.location_user))] }));
      }
    }
    if (req.method === 'POST' && path === `${base}/recovery/backup/job`) {
      const problem = requestProblem(body);
      if (problem) return sendError(res, dialect, 400, 'INVALID_ARGUMENT', problem);
      if (jobs.some((j) => j.state === 'INPROGRESS')) return sendError(res, dialect, 400, 'NOT_ALLOWED_IN_CURRENT_STATE', 'A backup or restore job is already in progress.');
      const b = body as { parts: string[]; location: string; location_user: string; location_password: string; backup_password?: string };
      stats.locationPasswords.push(b.location_password);
      const unknown = b.parts.filter((p) => !parts.some((q) => q.id === p));
      if (unknown.length > 0) return sendError(res, dialect, 400, 'INVALID_ARGUMENT', `Unknown backup part(s): ${unknown.join(', ')}.`);
      if (b.backup_password !== undefined && !/^(?=.*[A-Z])(?=.*[a-z])(?=.*\d)(?=.*[^A-Za-z0-9])[\x21-\x7e]{8,20}$/.test(b.backup_password)) {
        return sendError(res, dialect, 400, 'INVALID_ARGUMENT', 'Backup password does not meet the requirements.');
      }
      const now = new Date();
      const stamp = now.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
      const job: SimJobRecord = {
        id: `${stamp}-${build}${jobs.length > 0 ? `-${jobs.length}` : ''}`,
        state: 'INPROGRESS',
        progress: 0,
        messages: [msg('com.vmware.applmgmt.backup_started', 'Backup job started.')],
        start_time: now.toISOString(),
        parts: ['common', ...b.parts.filter((p) => p !== 'common')],
        location: b.location,
        encrypted: b.backup_password !== undefined,
        cancelled: false,
        files: [],
      };
      jobs.push(job);
      if (fault.kind === 'session-expiry') expireOnceArmed = true;
      const p = runJob(job, b.location_user, b.location_password, b.backup_password).finally(() => running.delete(p));
      running.add(p);
      return send(res, dialect === 'api' ? 201 : 200, wrap(dialect, jobStatus(job)));
    }
    if (req.method === 'GET' && path === `${base}/recovery/backup/job`) return send(res, 200, wrap(dialect, jobs.map((j) => j.id)));
    const m = new RegExp(`^${base}/recovery/backup/job/([^/]+)(/cancel)?$`).exec(path);
    if (m) {
      const job = jobs.find((j) => j.id === decodeURIComponent(m[1] ?? ''));
      if (!job) return sendError(res, dialect, 404, 'NOT_FOUND', `Backup job ${m[1] ?? ''} does not exist.`);
      if (req.method === 'GET' && !m[2]) return send(res, 200, wrap(dialect, jobStatus(job)));
      if (req.method === 'POST' && m[2]) {
        if (job.state !== 'INPROGRESS') return sendError(res, dialect, 400, 'NOT_ALLOWED_IN_CURRENT_STATE', `Backup job ${job.id} is not running.`);
        job.cancelled = true;
        return send(res, 200, wrap(dialect, { ...jobStatus(job), messages: [msg('com.vmware.applmgmt.backup_cancel', 'Cancel requested.')] }));
      }
    }
    return sendError(res, dialect, 404, 'NOT_FOUND', `No such resource: ${path}`);
  };

  const server: Server = createServer({ key: tls.key, cert: tls.cert }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) send(res, 500, { error_type: 'ERROR', messages: [msg('internal', err instanceof Error ? err.message : String(err))] });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  return {
    name: options.name,
    url: `https://${options.host ?? '127.0.0.1'}:${port}`,
    user,
    password,
    version,
    build,
    tls,
    jobs,
    stats,
    setFault(next) {
      fault = next;
      unavailableLeft = next.kind === 'unavailable' ? next.count : 0;
    },
    async setReachable(reachable) {
      if (reachable === server.listening) return;
      if (!reachable) {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        await closed;
        return;
      }
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, options.host ?? '127.0.0.1', () => {
          server.off('error', reject);
          resolve();
        });
      });
    },
    async stop() {
      for (const j of jobs) if (j.state === 'INPROGRESS') j.cancelled = true;
      await Promise.allSettled([...running]);
      server.closeAllConnections();
      if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function requestProblem(body: Record<string, unknown> | undefined): string | undefined {
  if (!body) return 'Request body is missing.';
  if (body['location_type'] !== 'SFTP') return `Location type ${String(body['location_type'])} is not supported by this simulation (use SFTP).`;
  if (typeof body['location'] !== 'string' || !String(body['location']).startsWith('sftp://')) return 'Location must be an sftp:// URL.';
  if (typeof body['location_user'] !== 'string' || typeof body['location_password'] !== 'string') return 'Location user and password are required.';
  if (!Array.isArray(body['parts'])) return 'Parts are required.';
  return undefined;
}

function jobStatus(job: SimJobRecord): Record<string, unknown> {
  return {
    id: job.id,
    state: job.state,
    progress: job.progress,
    messages: job.messages,
    start_time: job.start_time,
    ...(job.end_time ? { end_time: job.end_time } : {}),
  };
}
