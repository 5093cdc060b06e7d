import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { constants as fsConstants, type Stats } from 'node:fs';
import { lstat, mkdir, open, readdir, type FileHandle } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join, posix } from 'node:path';
import type { Attributes, Connection, FileEntry, ParsedKey, SFTPWrapper } from 'ssh2';
import { BackupError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { ssh2 } from '../executors/ssh2-module.ts';


/**
 * A one-purpose SFTP server on ssh2's server side, for one job: one user with a fresh random
 * password, a fresh host key, and one folder. Paths the client sends are mapped onto that folder:
 * the client sees `/<folder>` (its login directory) and nothing else. Refused, whatever the mode:
 * any path with a `..` segment or NUL, any path outside `/<folder>`, symlinks (creating, reading
 * or following them: files are opened with O_NOFOLLOW), shells, exec, port forwarding, and every
 * connection once the server is closed.
 *
 * - `write-only` (the backup receiver): mkdir, create/overwrite and write files, stat and list
 *   what the client wrote. No reads of file contents, no removes or renames.
 * - `read-only` (restore-stage): stat, list, open for reading and read. No writes of any kind.
 */
export type SftpMode = 'write-only' | 'read-only';

export interface SftpCredentials {
  readonly user: string;
  readonly password: string;
}

export interface SftpServerOptions {
  readonly mode: SftpMode;
  /** Local directory that `/<folder>` maps to (created if missing). */
  readonly dir: string;
  /** The single folder the client sees, e.g. "vc01-20261201T020000Z". */
  readonly folder: string;
  readonly listenHost: string;
  readonly listenPort: number;
  readonly logger: Logger;
  /** Told of bytes written (write-only mode), for progress. */
  readonly onBytes?: (total: number) => void;
}

export interface SftpRefusal {
  readonly op: string;
  readonly path: string;
  readonly why: string;
}

export interface RunningSftpServer {
  readonly port: number;
  readonly credentials: SftpCredentials;
  /** "SHA256:…" of this server's fresh host key. */
  readonly hostKeyFingerprint: string;
  readonly folder: string;
  /** Bytes written so far (write-only mode). */
  bytesWritten(): number;
  /** Refused logins and operations so far (for logs and tests; never holds a password). */
  readonly refusals: SftpRefusal[];
  /** Closes the listener and every session; later connections are refused. Idempotent. */
  close(): Promise<void>;
}

function randomToken(bytes: number): string {
  return randomBytes(bytes).toString('base64url');
}

/** Fresh credentials: the user says what it is for, the password is 24 random characters (alphanumeric, so every appliance form takes it). */
export function freshCredentials(purpose: string): SftpCredentials {
  const password = randomBytes(32).toString('base64').replace(/[^A-Za-z0-9]/g, '').slice(0, 24);
  return { user: `${purpose}-${randomToken(4).replace(/[^A-Za-z0-9]/g, 'x').toLowerCase()}`, password };
}

function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function attrsOf(st: Stats): Attributes {
  return { mode: st.mode, uid: 0, gid: 0, size: st.size, atime: Math.floor(st.atimeMs / 1000), mtime: Math.floor(st.mtimeMs / 1000) };
}

function longname(name: string, st: Stats): string {
  const kind = st.isDirectory() ? 'd' : '-';
  return `${kind}rw-------    1 backup   backup   ${String(st.size).padStart(12)} Jan  1 00:00 ${name}`;
}

type Handle = { kind: 'file'; fh: FileHandle; path: string } | { kind: 'dir'; entries: FileEntry[] | null; path: string };

/**
 * A fresh ed25519 host key. ssh2's generateKeyPairSync drops a leading zero byte of the public
 * key about once in 400 keys, and the result parses as neither public nor private key
 * ("Malformed OpenSSH public key"): such a key is discarded and another one made.
 */
function freshHostKey(): { hostKey: { private: string; public: string }; key: ParsedKey } {
  const { utils } = ssh2();
  for (let attempt = 0; attempt < 16; attempt++) {
    const hostKey = utils.generateKeyPairSync('ed25519');
    const parsed = utils.parseKey(hostKey.public);
    const key: ParsedKey | undefined = parsed instanceof Error ? undefined : Array.isArray(parsed) ? (parsed as ParsedKey[])[0] : parsed;
    if (key && !(utils.parseKey(hostKey.private) instanceof Error)) return { hostKey, key };
  }
  throw new Error('could not generate a usable ed25519 host key');
}

export async function startSftpServer(options: SftpServerOptions): Promise<RunningSftpServer> {
  const { Server, utils } = ssh2();
  const STATUS = utils.sftp.STATUS_CODE;
  const OPEN = utils.sftp.OPEN_MODE;
  const { mode, logger } = options;
  if (!/^[A-Za-z0-9._-]+$/.test(options.folder)) throw new BackupError('NATIVE_RECEIVER_FOLDER', `receiver folder ${JSON.stringify(options.folder)} must be one plain path segment`);
  await mkdir(options.dir, { recursive: true, mode: 0o700 });
  const credentials = freshCredentials(mode === 'write-only' ? 'vcsa-backup' : 'vcsa-restore');
  const { hostKey, key } = freshHostKey();
  const hostKeyFingerprint = `SHA256:${createHash('sha256').update(key.getPublicSSH()).digest('base64').replace(/=+$/, '')}`;
  const home = `/${options.folder}`;
  const refusals: SftpRefusal[] = [];
  const clients = new Set<Connection>();
  let closed = false;
  let written = 0;

  const refuse = (op: string, path: string, why: string): void => {
    refusals.push({ op, path, why });
    logger.warn({ op, path, why }, 'sftp: refused');
  };

  /** Client path → local path, or null (refused) when it is not inside /<folder>. */
  const localPath = (requested: string): { local: string; virtual: string } | null => {
    if (requested.includes('\0')) return null;
    const absolute = requested.startsWith('/') ? requested : `${home}/${requested}`;
    const segments = absolute.split('/').filter((s) => s !== '' && s !== '.');
    if (segments.includes('..')) return null;
    const virtual = `/${segments.join('/')}`;
    if (segments[0] !== options.folder) return virtual === '/' ? { local: '', virtual } : null;
    return { local: join(options.dir, ...segments.slice(1)), virtual };
  };

  /** lstat every component below the folder: none may be a symlink. */
  const noSymlinks = async (local: string): Promise<void> => {
    const rel = posix.relative(options.dir, local);
    let at = options.dir;
    for (const part of rel === '' ? [] : rel.split('/')) {
      at = join(at, part);
      const st = await lstat(at).catch(() => null);
      if (!st) return;
      if (st.isSymbolicLink()) throw Object.assign(new Error('symlink'), { code: 'ELOOP' });
    }
  };

  const server = new Server({ hostKeys: [hostKey.private], ident: 'vcsa-backup-receiver' }, (client) => {
    if (closed) {
      client.end();
      return;
    }
    clients.add(client);
    client.on('close', () => clients.delete(client));
    client.on('error', (err) => logger.debug({ err: err.message }, 'sftp: client connection error'));
    let failures = 0;
    client.on('authentication', (ctx) => {
      if (closed) return ctx.reject();
      if (ctx.method === 'password' && sameSecret(ctx.username, credentials.user) && sameSecret(ctx.password, credentials.password)) return ctx.accept();
      if (ctx.method !== 'none') {
        failures += 1;
        refuse('login', '', `${ctx.method} authentication as ${JSON.stringify(ctx.username.slice(0, 64))} refused`);
      }
      if (failures >= 3) {
        client.end();
        return;
      }
      ctx.reject(['password']);
    });
    client.on('request', (_accept, reject) => reject?.());
    client.on('tcpip', (_accept, reject) => reject());
    client.on('openssh.streamlocal', (_accept, reject) => reject());
    client.on('ready', () => {
      client.on('session', (accept) => {
        const session = accept();
        session.on('pty', (_a, reject) => reject?.());
        session.on('shell', (_a, reject) => {
          refuse('shell', '', 'no shell on this server');
          reject?.();
        });
        session.on('exec', (_a, reject, info) => {
          refuse('exec', '', `no commands on this server (asked: ${info.command.slice(0, 80)})`);
          reject?.();
        });
        session.on('subsystem', (_a, reject) => reject?.());
        session.on('sftp', (acceptSftp) => serveSftp(acceptSftp()));
      });
    });
  });

  const serveSftp = (sftp: SFTPWrapper): void => {
    const handles = new Map<number, Handle>();
    let nextHandle = 1;
    const newHandle = (h: Handle): Buffer => {
      const id = nextHandle++;
      handles.set(id, h);
      const buf = Buffer.alloc(4);
      buf.writeUInt32BE(id);
      return buf;
    };
    const getHandle = (buf: Buffer): [number, Handle | undefined] => {
      const id = buf.length === 4 ? buf.readUInt32BE(0) : -1;
      return [id, handles.get(id)];
    };
    const deny = (reqId: number, op: string, path: string, why: string): void => {
      refuse(op, path, why);
      sftp.status(reqId, STATUS.PERMISSION_DENIED, why);
    };
    const resolveOr = (reqId: number, op: string, path: string): { local: string; virtual: string } | null => {
      const r = localPath(path);
      if (!r) deny(reqId, op, path, path.split('/').includes('..') ? 'path escapes (..) are refused' : `only ${home} is served here`);
      return r;
    };
    const failed = (reqId: number, err: unknown): void => {
      const code = (err as NodeJS.ErrnoException).code;
      sftp.status(reqId, code === 'ENOENT' ? STATUS.NO_SUCH_FILE : code === 'ELOOP' ? STATUS.PERMISSION_DENIED : STATUS.FAILURE, code === 'ELOOP' ? 'symlinks are refused' : code ?? 'failure');
    };
    const statPath = async (local: string): Promise<Stats> => {
      await noSymlinks(local);
      return lstat(local);
    };
    const rootAttrs: Attributes = { mode: fsConstants.S_IFDIR | 0o500, uid: 0, gid: 0, size: 0, atime: 0, mtime: 0 };

    sftp.on('REALPATH', (reqId, path) => {
      const r = resolveOr(reqId, 'realpath', path === '.' || path === '' ? home : path);
      if (r) sftp.name(reqId, [{ filename: r.virtual, longname: r.virtual, attrs: rootAttrs }]);
    });
    const onStat = (op: string) => (reqId: number, path: string) => {
      const r = resolveOr(reqId, op, path);
      if (!r) return;
      if (r.local === '') return sftp.attrs(reqId, rootAttrs);
      statPath(r.local).then(
        (st) => (st.isSymbolicLink() ? deny(reqId, op, path, 'symlinks are refused') : sftp.attrs(reqId, attrsOf(st))),
        (err: unknown) => failed(reqId, err),
      );
    };
    sftp.on('STAT', onStat('stat'));
    sftp.on('LSTAT', onStat('lstat'));
    sftp.on('FSTAT', (reqId, buf) => {
      const [, h] = getHandle(buf);
      if (!h || h.kind !== 'file') return sftp.status(reqId, STATUS.FAILURE, 'bad handle');
      h.fh.stat().then(
        (st) => sftp.attrs(reqId, attrsOf(st)),
        (err: unknown) => failed(reqId, err),
      );
    });
    sftp.on('OPENDIR', (reqId, path) => {
      const r = resolveOr(reqId, 'opendir', path);
      if (!r) return;
      if (r.local === '') {
        sftp.handle(reqId, newHandle({ kind: 'dir', entries: [{ filename: options.folder, longname: `drwx------ ${options.folder}`, attrs: rootAttrs }], path: r.virtual }));
        return;
      }
      (async () => {
        await noSymlinks(r.local);
        const names = await readdir(r.local);
        const entries: FileEntry[] = [];
        for (const name of names) {
          const st = await lstat(join(r.local, name));
          if (st.isSymbolicLink()) continue;
          entries.push({ filename: name, longname: longname(name, st), attrs: attrsOf(st) });
        }
        return entries;
      })().then(
        (entries) => sftp.handle(reqId, newHandle({ kind: 'dir', entries, path: r.virtual })),
        (err: unknown) => failed(reqId, err),
      );
    });
    sftp.on('READDIR', (reqId, buf) => {
      const [, h] = getHandle(buf);
      if (!h || h.kind !== 'dir') return sftp.status(reqId, STATUS.FAILURE, 'bad handle');
      if (!h.entries || h.entries.length === 0) {
        h.entries = null;
        return sftp.status(reqId, STATUS.EOF);
      }
      const batch = h.entries;
      h.entries = null;
      sftp.name(reqId, batch);
    });
    sftp.on('OPEN', (reqId, path, flags) => {
      const r = resolveOr(reqId, 'open', path);
      if (!r) return;
      if (r.local === '') return deny(reqId, 'open', path, 'not a file');
      const wantsRead = (flags & OPEN.READ) !== 0;
      const wantsWrite = (flags & (OPEN.WRITE | OPEN.APPEND | OPEN.CREAT | OPEN.TRUNC)) !== 0;
      if (mode === 'write-only' && wantsRead) return deny(reqId, 'open', path, 'this server only receives files; reading is refused');
      if (mode === 'read-only' && wantsWrite) return deny(reqId, 'open', path, 'this server is read-only');
      let fsFlags = fsConstants.O_NOFOLLOW;
      if (mode === 'read-only') fsFlags |= fsConstants.O_RDONLY;
      else {
        fsFlags |= fsConstants.O_WRONLY;
        if (flags & OPEN.CREAT) fsFlags |= fsConstants.O_CREAT;
        if (flags & OPEN.TRUNC) fsFlags |= fsConstants.O_TRUNC;
        if (flags & OPEN.EXCL) fsFlags |= fsConstants.O_EXCL;
        if (flags & OPEN.APPEND) fsFlags |= fsConstants.O_APPEND;
      }
      (async () => {
        await noSymlinks(r.local);
        return open(r.local, fsFlags, 0o600);
      })().then(
        (fh) => sftp.handle(reqId, newHandle({ kind: 'file', fh, path: r.virtual })),
        (err: unknown) => failed(reqId, err),
      );
    });
    sftp.on('WRITE', (reqId, buf, offset, data) => {
      const [, h] = getHandle(buf);
      if (mode !== 'write-only') return deny(reqId, 'write', h?.path ?? '', 'this server is read-only');
      if (!h || h.kind !== 'file') return sftp.status(reqId, STATUS.FAILURE, 'bad handle');
      h.fh.write(data, 0, data.length, offset).then(
        () => {
          written += data.length;
          options.onBytes?.(written);
          sftp.status(reqId, STATUS.OK);
        },
        (err: unknown) => failed(reqId, err),
      );
    });
    sftp.on('READ', (reqId, buf, offset, length) => {
      const [, h] = getHandle(buf);
      if (mode !== 'read-only') return deny(reqId, 'read', h?.path ?? '', 'this server only receives files; reading is refused');
      if (!h || h.kind !== 'file') return sftp.status(reqId, STATUS.FAILURE, 'bad handle');
      const out = Buffer.alloc(Math.min(length, 256 * 1024));
      h.fh.read(out, 0, out.length, offset).then(
        ({ bytesRead }) => (bytesRead === 0 ? sftp.status(reqId, STATUS.EOF) : sftp.data(reqId, out.subarray(0, bytesRead))),
        (err: unknown) => failed(reqId, err),
      );
    });
    sftp.on('CLOSE', (reqId, buf) => {
      const [id, h] = getHandle(buf);
      if (!h) return sftp.status(reqId, STATUS.FAILURE, 'bad handle');
      handles.delete(id);
      if (h.kind === 'dir') return sftp.status(reqId, STATUS.OK);
      h.fh.close().then(
        () => sftp.status(reqId, STATUS.OK),
        (err: unknown) => failed(reqId, err),
      );
    });
    sftp.on('MKDIR', (reqId, path) => {
      const r = resolveOr(reqId, 'mkdir', path);
      if (!r) return;
      if (mode !== 'write-only') return deny(reqId, 'mkdir', path, 'this server is read-only');
      if (r.local === '') return sftp.status(reqId, STATUS.FAILURE, 'exists');
      (async () => {
        await noSymlinks(r.local);
        await mkdir(r.local, { mode: 0o700 });
      })().then(
        () => sftp.status(reqId, STATUS.OK),
        (err: unknown) => ((err as NodeJS.ErrnoException).code === 'EEXIST' ? sftp.status(reqId, STATUS.FAILURE, 'exists') : failed(reqId, err)),
      );
    });
    // Attributes are ours to set: accept and ignore, as many servers do (clients set mtimes after a put).
    sftp.on('SETSTAT', (reqId, path) => {
      if (!resolveOr(reqId, 'setstat', path)) return;
      if (mode !== 'write-only') return deny(reqId, 'setstat', path, 'this server is read-only');
      sftp.status(reqId, STATUS.OK);
    });
    sftp.on('FSETSTAT', (reqId) => (mode === 'write-only' ? sftp.status(reqId, STATUS.OK) : deny(reqId, 'fsetstat', '', 'this server is read-only')));
    sftp.on('SYMLINK', (reqId, linkPath) => deny(reqId, 'symlink', linkPath, 'symlinks are refused'));
    sftp.on('READLINK', (reqId, path) => deny(reqId, 'readlink', path, 'symlinks are refused'));
    sftp.on('REMOVE', (reqId, path) => deny(reqId, 'remove', path, 'removing files is refused'));
    sftp.on('RMDIR', (reqId, path) => deny(reqId, 'rmdir', path, 'removing directories is refused'));
    sftp.on('RENAME', (reqId, oldPath) => deny(reqId, 'rename', oldPath, 'renaming is refused'));
    sftp.on('EXTENDED', (reqId) => sftp.status(reqId, STATUS.OP_UNSUPPORTED));
    sftp.on('end', () => {
      for (const h of handles.values()) if (h.kind === 'file') void h.fh.close().catch(() => undefined);
      handles.clear();
    });
  };

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.listenPort, options.listenHost, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((err: unknown) => {
    throw new BackupError('NATIVE_RECEIVER_LISTEN', `cannot listen on ${options.listenHost}:${options.listenPort} for the SFTP receiver (${(err as NodeJS.ErrnoException).code ?? 'error'}); check native.receiver.listen`, { cause: err });
  });
  server.on('error', (err: Error) => logger.warn({ err: err.message }, 'sftp: server error'));
  const port = (server.address() as AddressInfo).port;
  logger.info({ mode, port, folder: home, user: credentials.user, hostKey: hostKeyFingerprint }, 'sftp: listening');

  let closing: Promise<void> | undefined;
  return {
    port,
    credentials,
    hostKeyFingerprint,
    folder: home,
    refusals,
    bytesWritten: () => written,
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        closed = true;
        server.close(() => resolve());
        for (const c of clients) c.end();
        // end() is polite; a client that ignores it is cut off.
        setTimeout(() => {
          for (const c of clients) (c as unknown as { _sock?: { destroy(): void } })._sock?.destroy();
        }, 2000).unref();
      });
      return closing;
    },
  };
}
