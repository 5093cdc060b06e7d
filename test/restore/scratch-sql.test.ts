import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { after, before, describe, test } from 'node:test';
import { createScratchDatabase, loadPlainSql, parseScratchUrl, scratchQuery, type ScratchDatabase } from '../../src/restore/scratch-db.ts';
import { ScratchSqlFilter } from '../../src/restore/scratch-sql.ts';

const server = parseScratchUrl('postgres://postgres@127.0.0.1:5432/postgres');

function pgDump(database: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(`${server.binDir || '/usr/bin'}/pg_dump`, ['-h', server.host, '-p', server.port, '-U', server.user, '-Fp', '-c', database], { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`pg_dump failed: ${stderr}`));
      else resolve(stdout);
    });
  });
}

void describe('loading a `pg_dump -c` plain dump into an empty scratch database', () => {
  let dir: string;
  let source: ScratchDatabase;
  const made: ScratchDatabase[] = [];
  let dump: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'scratch-sql-'));
    source = await createScratchDatabase(server, 'source');
    // A data row that looks like a statement the filter drops: COPY data must pass untouched.
    await scratchQuery(server, source.name, "CREATE TABLE note (id serial PRIMARY KEY, body text); INSERT INTO note (body) VALUES ('DROP TABLE public.note;'), ('ALTER TABLE x OWNER TO y;'), ('Zürich ✓');");
    // What an appliance's dump looks like on another server: owned by a role that does not exist there.
    const role = `no_such_role_${randomBytes(4).toString('hex')}`;
    dump = (await pgDump(source.name)).replaceAll('OWNER TO postgres;', `OWNER TO ${role};`) + `GRANT SELECT ON public.note TO ${role};\n`;
    assert.match(dump, /^DROP TABLE public\.note;$/m, 'a -c dump starts by dropping');
  });
  after(async () => {
    for (const db of [source, ...made]) await db?.drop();
    await rm(dir, { recursive: true, force: true });
  });

  void test('as is, psql with ON_ERROR_STOP fails on the first DROP or foreign owner', async () => {
    const db = await createScratchDatabase(server, 'raw');
    made.push(db);
    const file = join(dir, 'raw.sql');
    await writeFile(file, dump);
    // The filter is what makes it load: bypass it by feeding psql directly.
    await assert.rejects(
      new Promise<void>((resolve, reject) => {
        execFile(`${server.binDir || '/usr/bin'}/psql`, ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', server.host, '-U', server.user, '-d', db.name, '-f', file], (err) => (err ? reject(new Error(err.message)) : resolve()));
      }),
    );
  });

  void test('filtered, it loads, and the data is intact', async () => {
    const db = await createScratchDatabase(server, 'filtered');
    made.push(db);
    const file = join(dir, 'filtered.sql');
    await writeFile(file, dump);
    await loadPlainSql(server, db.name, file);
    const rows = await scratchQuery(server, db.name, 'SELECT body FROM note ORDER BY id');
    assert.deepEqual(rows.trim().split('\n'), ['DROP TABLE public.note;', 'ALTER TABLE x OWNER TO y;', 'Zürich ✓']);
  });

  void test('the filter works across arbitrary chunk boundaries', async () => {
    const whole = await text(Readable.from([Buffer.from(dump)]).pipe(new ScratchSqlFilter()));
    for (const size of [1, 7, 64]) {
      const chunks: Buffer[] = [];
      const bytes = Buffer.from(dump);
      for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, i + size));
      assert.equal(await text(Readable.from(chunks).pipe(new ScratchSqlFilter())), whole, `chunks of ${size}`);
    }
    assert.doesNotMatch(whole, /^DROP /m);
    assert.doesNotMatch(whole, /^GRANT /m);
    assert.match(whole, /^1\tDROP TABLE public\.note;$/m, 'the data row survives');
    assert.match(whole, /Zürich ✓/);
  });
});
