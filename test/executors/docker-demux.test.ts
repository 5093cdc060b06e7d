import assert from 'node:assert/strict';
import { PassThrough, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { test } from 'node:test';
import { DockerDemux } from '../../src/executors/docker-demux.ts';

/** One frame of Docker's multiplexed exec stream: type (1 stdout, 2 stderr), 3 zero bytes, length. */
function frame(type: 1 | 2, payload: Buffer | string): Buffer {
  const body = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const header = Buffer.alloc(8);
  header.writeUInt8(type, 0);
  header.writeUInt32BE(body.length, 4);
  return Buffer.concat([header, body]);
}

const written = (demux: DockerDemux, chunk: Buffer): Promise<void> =>
  new Promise((resolve, reject) => demux.write(chunk, (err) => (err ? reject(err) : resolve())));

// Docker does not order stdout and stderr frames: the wrapper's pid line (stderr) can arrive after
// the first stdout bytes, and with them a failed stdout destination. The pid must still be read.
void test('after stdout fails, stderr frames are still handed on and stdout no longer holds the stream back', async () => {
  const stderr: string[] = [];
  const demux = new DockerDemux((chunk) => stderr.push(chunk.toString()));
  const failing = new Writable({
    write(_chunk, _encoding, callback) {
      callback(new Error('spool disk full'));
    },
  });
  const failed = pipeline(demux.pipe(new PassThrough()), failing).catch((err: unknown) => {
    demux.discardStdout();
    return err;
  });
  await written(demux, frame(1, 'data\n'));
  assert.match(String(await failed), /spool disk full/);

  await written(demux, frame(2, 'vcsa-backup-pid:4242\n'));
  // Far more stdout than any buffer holds: with nobody reading it, only dropping it lets the writes complete.
  for (let i = 0; i < 64; i++) await written(demux, frame(1, Buffer.alloc(64 * 1024, 1)));
  await written(demux, frame(2, 'after\n'));
  assert.deepEqual(stderr, ['vcsa-backup-pid:4242\n', 'after\n']);
});

void test('frames split across chunks are reassembled; stdout passes through in order', async () => {
  const stderr: string[] = [];
  const demux = new DockerDemux((chunk) => stderr.push(chunk.toString()));
  const out: Buffer[] = [];
  const all = Buffer.concat([frame(2, 'err-1\n'), frame(1, 'out-1\n'), frame(1, 'out-2\n'), frame(2, 'err-2\n')]);
  const done = pipeline(demux, new Writable({ write(chunk: Buffer, _e, cb) { out.push(chunk); cb(); } }));
  for (let i = 0; i < all.length; i += 5) demux.write(all.subarray(i, i + 5));
  demux.end();
  await done;
  assert.equal(Buffer.concat(out).toString(), 'out-1\nout-2\n');
  assert.equal(stderr.join(''), 'err-1\nerr-2\n');
});
