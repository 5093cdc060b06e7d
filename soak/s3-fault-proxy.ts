/**
 * A fault-injecting HTTP proxy in front of an S3 endpoint. While a fault window is open, a share
 * of the requests get it: an error status with S3's XML (500 InternalError, 503
 * ServiceUnavailable, 503 SlowDown), a connection reset in the middle of an UploadPart body, a
 * stall (no answer, then a reset), or one corrupted byte in an object's body (GET). Faults are
 * injected before a request reaches the server (or, for corruption, on the way back), so the
 * proxy knows exactly which multipart uploads exist: it records each created, completed and
 * aborted upload and each committed manifest, for the soak's checks.
 */
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export const s3FaultKinds = ['s3-500', 's3-503', 's3-slowdown', 's3-reset-mid-part', 's3-stall', 's3-corrupt-byte'] as const;
export type S3FaultKind = (typeof s3FaultKinds)[number];

export interface MultipartRecord {
  readonly key: string;
  readonly createdAt: number;
  lastRequestAt: number;
  state: 'open' | 'completed' | 'aborted';
}

export interface ManifestCommit {
  readonly key: string;
  readonly at: number;
}

export interface S3FaultProxy {
  readonly endpoint: string;
  /** Opens a fault window of `kind` until `close()` of the returned handle. */
  open(kind: S3FaultKind): { close(): void };
  readonly uploads: ReadonlyMap<string, MultipartRecord>;
  readonly manifests: readonly ManifestCommit[];
  /** Faults actually applied to a request, per kind. */
  readonly hits: ReadonlyMap<S3FaultKind, number>;
  stop(): Promise<void>;
}

const errorBodies: Record<'s3-500' | 's3-503' | 's3-slowdown', [number, string, string]> = {
  's3-500': [500, 'InternalError', 'We encountered an internal error. Please try again.'],
  's3-503': [503, 'ServiceUnavailable', 'Service is unable to handle request.'],
  's3-slowdown': [503, 'SlowDown', 'Please reduce your request rate.'],
};

export async function startS3FaultProxy(upstream: string, options: { share?: number; stallMs?: number; random?: () => number } = {}): Promise<S3FaultProxy> {
  const target = new URL(upstream);
  const random = options.random ?? Math.random;
  const share = options.share ?? 0.5;
  const stallMs = options.stallMs ?? 15_000;
  const active = new Map<S3FaultKind, number>();
  const uploads = new Map<string, MultipartRecord>();
  const manifests: ManifestCommit[] = [];
  const hits = new Map<S3FaultKind, number>();
  const sockets = new Set<import('node:net').Socket>();

  const hit = (kind: S3FaultKind): void => void hits.set(kind, (hits.get(kind) ?? 0) + 1);
  const applicable = (kind: S3FaultKind, req: IncomingMessage, query: URLSearchParams): boolean => {
    // Any upload body: a part, or a whole object (small dumps are one PUT).
    if (kind === 's3-reset-mid-part') return req.method === 'PUT' && Number(req.headers['content-length'] ?? '0') > 0;
    if (kind === 's3-corrupt-byte') return req.method === 'GET' && !query.has('list-type') && !query.has('uploads') && !query.has('uploadId') && !query.has('location');
    return true;
  };
  const pick = (req: IncomingMessage, query: URLSearchParams): S3FaultKind | undefined => {
    for (const kind of active.keys()) if (applicable(kind, req, query) && random() < share) return kind;
    return undefined;
  };

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://proxy');
    const query = url.searchParams;
    const key = decodeURIComponent(url.pathname.replace(/^\/[^/]+\//, ''));
    const uploadId = query.get('uploadId');
    if (uploadId) {
      const u = uploads.get(uploadId);
      if (u) u.lastRequestAt = Date.now();
    }
    const fault = pick(req, query);
    if (fault === 's3-500' || fault === 's3-503' || fault === 's3-slowdown') {
      hit(fault);
      const [status, code, message] = errorBodies[fault];
      req.resume();
      req.on('end', () => {
        res.writeHead(status, { 'content-type': 'application/xml', ...(status === 503 ? { 'retry-after': '1' } : {}) });
        res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message><RequestId>soak</RequestId></Error>`);
      });
      return;
    }
    if (fault === 's3-reset-mid-part') {
      hit(fault);
      let seen = 0;
      req.on('data', (chunk: Buffer) => {
        seen += chunk.length;
        if (seen >= Math.min(16 * 1024, Number(req.headers['content-length']) / 2)) req.socket.destroy();
      });
      req.on('end', () => req.socket.destroy());
      return;
    }
    if (fault === 's3-stall') {
      hit(fault);
      req.resume();
      const timer = setTimeout(() => req.socket.destroy(), stallMs);
      req.socket.on('close', () => clearTimeout(timer));
      return;
    }
    const corrupt = fault === 's3-corrupt-byte';
    const up = request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host } },
      (upRes) => {
        const status = upRes.statusCode ?? 502;
        const isCreate = req.method === 'POST' && query.has('uploads');
        const isComplete = req.method === 'POST' && uploadId !== null;
        const collect = isCreate || isComplete;
        res.writeHead(status, upRes.headers);
        const chunks: Buffer[] = [];
        let flipped = !corrupt;
        upRes.on('data', (chunk: Buffer) => {
          if (!flipped && chunk.length > 0) {
            const copy = Buffer.from(chunk);
            const at = Math.floor(copy.length / 2);
            copy[at] = (copy[at] ?? 0) ^ 0x01;
            chunk = copy;
            flipped = true;
            hit('s3-corrupt-byte');
          }
          if (collect) chunks.push(chunk);
          res.write(chunk);
        });
        upRes.on('end', () => {
          res.end();
          const body = Buffer.concat(chunks).toString('utf8');
          const ok = status >= 200 && status < 300 && !body.includes('<Error>');
          if (isCreate && ok) {
            const id = /<UploadId>([^<]+)<\/UploadId>/.exec(body)?.[1];
            if (id) uploads.set(id, { key, createdAt: Date.now(), lastRequestAt: Date.now(), state: 'open' });
          } else if (isComplete && ok) {
            const u = uploads.get(uploadId);
            if (u) u.state = 'completed';
          } else if (req.method === 'DELETE' && uploadId !== null && (ok || status === 404)) {
            const u = uploads.get(uploadId);
            if (u) u.state = 'aborted';
          }
          if (req.method === 'PUT' && ok && key.endsWith('/manifest.json') && !query.has('partNumber')) manifests.push({ key, at: Date.now() });
        });
        upRes.on('error', () => res.destroy());
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    open(kind) {
      active.set(kind, (active.get(kind) ?? 0) + 1);
      let closed = false;
      return {
        close() {
          if (closed) return;
          closed = true;
          const n = (active.get(kind) ?? 1) - 1;
          if (n <= 0) active.delete(kind);
          else active.set(kind, n);
        },
      };
    },
    uploads,
    manifests,
    hits,
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
