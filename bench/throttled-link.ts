/**
 * A loopback TCP proxy whose client → server direction is one shared uplink of fixed bandwidth,
 * like a site's WAN link to S3: the fleet goal ("6 appliances whose upload takes about as long
 * as their dump") is about uploads that wait on the network, which an S3 endpoint on the same
 * machine never does. Every connection draws from the same budget in arrival order; replies
 * (downloads) pass unthrottled.
 */
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { Transform, type TransformCallback } from 'node:stream';

export interface ThrottledLink {
  /** http://127.0.0.1:PORT, in front of the target. */
  readonly url: string;
  /** Bytes per second from now on; Infinity: no limit. */
  setRate(bytesPerSecond: number): void;
  close(): Promise<void>;
}

class Uplink {
  #freeAt = 0;
  constructor(public bytesPerSecond: number) {}
  /** Milliseconds until a chunk of `bytes` has crossed the link, queued behind earlier ones. */
  reserve(bytes: number): number {
    if (!Number.isFinite(this.bytesPerSecond)) return 0;
    const now = performance.now();
    this.#freeAt = Math.max(now, this.#freeAt) + (bytes / this.bytesPerSecond) * 1000;
    return this.#freeAt - now;
  }
}

function throttle(link: Uplink): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, done: TransformCallback) {
      const wait = link.reserve(chunk.length);
      if (wait <= 0) done(null, chunk);
      else setTimeout(() => done(null, chunk), wait);
    },
  });
}

export async function startThrottledLink(target: string, bytesPerSecond: number): Promise<ThrottledLink> {
  const { hostname, port } = new URL(target);
  const link = new Uplink(bytesPerSecond);
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(Number(port), hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(throttle(link)).pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    setRate: (bytesPerSecond) => {
      link.bytesPerSecond = bytesPerSecond;
    },
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
