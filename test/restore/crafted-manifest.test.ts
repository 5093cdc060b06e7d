/**
 * Anyone who can write to the bucket (every worker can) can write a manifest. These are the
 * crafted ones of issue 9 against a real S3 endpoint: each is refused as MANIFEST_INVALID (or, for
 * foreign hashes under the right keys, RESTORE_CHECKSUM_MISMATCH) before anything is downloaded,
 * written outside the work directory, or stopped — the audit log proves no service was touched.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { backupIdFor, manifestKey, parseManifest, type Manifest } from '../../src/backup/manifest.ts';
import type { BackupOutcome } from '../../src/backup/run-backup.ts';
import { readAudit } from '../../src/sim/audit.ts';
import { runCliInProcess } from '../support/cli-in-process.ts';
import { createFixture, type Fixture } from './fixture.ts';

void describe('crafted manifests are refused before anything is touched', () => {
  let fx: Fixture;
  let configPath: string;
  let vc1: BackupOutcome;
  let vc2: BackupOutcome;
  let victimDir: string;
  let victim: string;
  let idClock = Date.parse('2030-01-01T00:00:00Z');
  const victimText = 'the operator keeps this file\n';

  /** A new backup id, newer than the real ones, for each crafted manifest. */
  const nextId = (): string => backupIdFor(new Date((idClock += 60_000)));

  const put = async (target: string, id: string, manifest: unknown): Promise<void> => {
    await fx.store.putBytes(manifestKey('vcsa', target, id), Buffer.from(JSON.stringify(manifest)), { contentType: 'application/json' });
  };

  /** Runs restore and verify of that backup id; both must fail with `code` and touch nothing. */
  const refusedEverywhere = async (id: string, code: string): Promise<void> => {
    const auditBefore = (await readAudit(fx.auditLog)).length;
    for (const args of [['restore', '--yes'], ['verify']]) {
      const res = await runCliInProcess([...args, '--target', 'vc1', '--backup', id, '--config', configPath, '--json']);
      assert.notEqual(res.code, 0, `${args[0]} accepted a crafted manifest: ${res.stdout}`);
      // A refused manifest is an error; a verify that found bad objects is a report with ok: false.
      const doc = JSON.parse(res.stdout) as { error?: { code: string }; ok?: boolean; checksums?: string };
      if (doc.error) assert.equal(doc.error.code, code, `${args[0]}: ${res.stdout}`);
      else assert.deepEqual([code, doc.ok, doc.checksums], ['RESTORE_CHECKSUM_MISMATCH', false, 'mismatch'], `${args[0]}: ${res.stdout}`);
    }
    assert.equal((await readAudit(fx.auditLog)).length, auditBefore, 'a service was stopped or started');
    assert.equal(await readFile(victim, 'utf8'), victimText, 'the file outside the work directory was changed');
    assert.deepEqual((await readdir(victimDir)).sort(), ['victim.gz'], 'something was written beside the victim');
    // Work directories are removed: nothing of the crafted backup stays in the spool.
    const spool = join(fx.dir, 'spool');
    if (existsSync(spool)) assert.deepEqual((await readdir(spool)).filter((d) => /^(restore|verify)-/.test(d)), []);
  };

  before(async () => {
    fx = await createFixture(['vc1', 'vc2']);
    configPath = join(fx.dir, 'fleet.yaml');
    await writeFile(configPath, fx.yaml());
    vc1 = await fx.backup('vc1');
    vc2 = await fx.backup('vc2');
    victimDir = join(fx.dir, 'x');
    victim = join(victimDir, 'victim.gz');
    await mkdir(victimDir, { recursive: true });
    await writeFile(victim, victimText);
  });
  after(async () => {
    await fx?.close();
  });

  void test('an artifact file that escapes the work directory', async () => {
    const id = nextId();
    const escape = `${'../'.repeat(12)}${victim.slice(1)}`;
    const [first, ...rest] = vc1.manifest.artifacts;
    await put('vc1', id, { ...vc1.manifest, id, artifacts: [{ ...first!, file: escape }, ...rest] });
    await refusedEverywhere(id, 'MANIFEST_INVALID');
    // A plain name that is not the profile's is refused too (no guessing what it might mean).
    const id2 = nextId();
    await put('vc1', id2, { ...vc1.manifest, id: id2, artifacts: [{ ...first!, file: 'victim.gz' }, ...rest] });
    await refusedEverywhere(id2, 'MANIFEST_INVALID');
  });

  void test("another target's manifest, keys or target name under vc1", async () => {
    // vc02's manifest copied as is: its target and keys are vc02's.
    const id = nextId();
    await put('vc1', id, { ...vc2.manifest, id });
    await refusedEverywhere(id, 'MANIFEST_INVALID');
    // Claims vc1 but points at vc02's objects.
    const id2 = nextId();
    await put('vc1', id2, { ...vc2.manifest, id: id2, target: 'vc1' });
    await refusedEverywhere(id2, 'MANIFEST_INVALID');
    // vc1's own keys but "target": "vc2".
    const id3 = nextId();
    await put('vc1', id3, { ...vc1.manifest, id: id3, target: 'vc2' });
    await refusedEverywhere(id3, 'MANIFEST_INVALID');
  });

  let foreignHashes = '';
  void test("vc1's keys with vc02's sizes and hashes fail the download check, before any stop", async () => {
    const id = nextId();
    foreignHashes = id;
    const foreign = vc1.manifest.artifacts.map((a) => {
      const other = vc2.manifest.artifacts.find((b) => b.name === a.name)!;
      return { ...a, bytes: other.bytes, sha256: other.sha256, rawBytes: other.rawBytes, rawSha256: other.rawSha256 };
    });
    // The keys must be this backup's own: copy vc1's objects under the new id.
    const artifacts = [];
    for (const a of foreign) {
      const key = a.key.replace(vc1.manifest.id, id);
      await fx.store.putBytes(key, await fx.store.getBytes(a.key));
      artifacts.push({ ...a, key });
    }
    await put('vc1', id, { ...vc1.manifest, id, artifacts });
    await refusedEverywhere(id, 'RESTORE_CHECKSUM_MISMATCH');
  });

  void test('an id with ../ in it, and a manifest in a folder that is no backup id', async () => {
    const id = nextId();
    await put('vc1', id, { ...vc1.manifest, id: '../../../../tmp/x/ID' });
    await refusedEverywhere(id, 'MANIFEST_INVALID');
    await put('vc1', 'not-an-id', { ...vc1.manifest, id: 'not-an-id' });
    await refusedEverywhere('not-an-id', 'MANIFEST_INVALID');
  });

  void test('list reports every crafted manifest instead of listing it; latest refuses to fall back past them', async () => {
    const res = await runCliInProcess(['list', '--target', 'vc1', '--config', configPath, '--json']);
    assert.equal(res.code, 0, res.stderr);
    const doc = JSON.parse(res.stdout) as { backups: { id: string }[]; damaged: { key: string; code: string }[] };
    // The one with foreign hashes is well formed: listed, and refused when its objects are read.
    assert.deepEqual(doc.backups.map((b) => b.id), [foreignHashes, vc1.manifest.id], 'only well-formed manifests are listed');
    assert.equal(doc.damaged.length, 7, JSON.stringify(doc.damaged));
    assert.ok(doc.damaged.every((d) => d.code === 'MANIFEST_INVALID'), JSON.stringify(doc.damaged));

    const auditBefore = (await readAudit(fx.auditLog)).length;
    const latest = await runCliInProcess(['restore', '--target', 'vc1', '--yes', '--config', configPath, '--json']);
    assert.equal(latest.code, 1);
    assert.equal((JSON.parse(latest.stdout) as { error: { code: string } }).error.code, 'MANIFEST_INVALID');
    assert.equal((await readAudit(fx.auditLog)).length, auditBefore);
  });

  void test('parseManifest accepts what backups and rekey write, and names the bad field otherwise', () => {
    const good: Manifest = vc1.manifest;
    parseManifest(JSON.parse(JSON.stringify(good)), vc1.manifestKey);
    const rekeyed = { ...good, artifacts: good.artifacts.map((a) => ({ ...a, key: a.key.replace(`/${good.id}/`, `/${good.id}/rekey-20300101T000000.000Z/`) })) };
    parseManifest(rekeyed, vc1.manifestKey);
    const bad = (m: unknown, field: RegExp): void => assert.throws(() => parseManifest(m, vc1.manifestKey), (e: Error & { code?: string }) => e.code === 'MANIFEST_INVALID' && field.test(e.message));
    bad({ ...good, artifacts: good.artifacts.map((a) => ({ ...a, key: a.key.replace(`/${good.id}/`, `/${good.id}/rekey-x/`) })) }, /artifacts\[0\]\.key/);
    bad({ ...good, artifacts: [{ ...good.artifacts[0]!, sha256: 'zz' }] }, /sha256/);
    bad({ ...good, artifacts: [{ ...good.artifacts[0]!, name: 'etc' }] }, /artifacts\[0\]\.name/);
    bad({ ...good, artifacts: [good.artifacts[0]!, good.artifacts[0]!] }, /twice/);
    bad({ ...good, profile: 'evil' }, /profile/);
    bad({ ...good, artifacts: [{ ...good.artifacts[0]!, bytes: -1 }] }, /bytes/);
  });
});
