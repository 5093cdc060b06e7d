import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { generateIdentity, identityToRecipient } from 'age-encryption';
import { pino, type Logger } from 'pino';
import type { Manifest } from '../../src/backup/manifest.ts';
import { rekeyTarget, type RekeyResult } from '../../src/backup/rekey.ts';
import type { BackupOutcome } from '../../src/backup/run-backup.ts';
import { listBackups, readManifest } from '../../src/catalog/catalog.ts';
import { Secret } from '../../src/config/secret.ts';
import { acquireTargetLock } from '../../src/locks/target-lock.ts';
import { silentLogger } from '../../src/log.ts';
import { verifyBackup } from '../../src/restore/verify.ts';
import type { ObjectStore } from '../../src/storage/object-store.ts';
import { runCli } from '../support/fleet.ts';
import { createFixture, type Fixture } from '../restore/fixture.ts';
import { convertToLegacyFormat } from './legacy-format.ts';

type Mutation = 'putFile' | 'putBytes' | 'deleteMany';

/** The store, with `after` called after every write or delete it performs. */
function watched(store: ObjectStore, after: (op: Mutation, key: string) => Promise<void>): ObjectStore & { readonly mutations: number } {
  let mutations = 0;
  return new Proxy(store, {
    get(target, prop) {
      if (prop === 'mutations') return mutations;
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      if (prop === 'putFile' || prop === 'putBytes' || prop === 'deleteMany') {
        return async (...args: unknown[]) => {
          const result: unknown = await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
          mutations += 1;
          const first = args[0];
          await after(prop, Array.isArray(first) ? String(first[0] ?? '') : String(first));
          return result;
        };
      }
      return (value as (...a: unknown[]) => unknown).bind(target);
    },
  }) as ObjectStore & { readonly mutations: number };
}

/**
 * `rekey` on a simulated VCSA 5.5's backups in S3: an old-format backup, an unencrypted one and
 * one encrypted to a recipient since removed are re-encrypted to the current recipient; the
 * result opens with Debian's age and verifies with the new identity alone; list sees a complete
 * backup after every single write or delete; a manifest changed meanwhile aborts the switch; the
 * target lock is honoured; a second run has nothing to do.
 */
void describe('rekey', () => {
  let fx: Fixture;
  let logger: Logger;
  const logLines: string[] = [];
  const hex = randomBytes(6).toString('hex');
  const oldPassphrase = `old-${hex}-passphrase`;
  let ids: string[];
  let recipients: string[];
  let keyFiles: string[];
  let passFile: string;
  let legacy: Manifest;
  let plain: BackupOutcome;
  let toOld: BackupOutcome;

  /** Now: encrypted to recipients[1]; identities of both keys; the old passphrase for the old format. */
  const current = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
    encryption: { recipients: [recipients[1]], identities: [{ file: keyFiles[0] }, { file: keyFiles[1] }], previousPassphrases: [{ file: passFile }] },
    ...extra,
  });
  const rekey = (overrides: Record<string, unknown>, options: { backup?: string; dryRun?: boolean; store?: ObjectStore } = {}): Promise<RekeyResult> =>
    rekeyTarget({ config: fx.config(overrides), target: 'vc1', store: options.store ?? fx.store, redis: fx.redis, logger, ...(options.backup ? { backup: options.backup } : {}), ...(options.dryRun ? { dryRun: true } : {}) });
  const keysWithSizes = async (): Promise<string[]> => {
    const out: string[] = [];
    for await (const o of fx.store.list('vcsa/')) out.push(`${o.key} ${o.bytes}`);
    return out;
  };
  /** Invariant 5 from the outside: every listed backup's manifest names only objects that exist. */
  const everyBackupComplete = async (expected: number): Promise<void> => {
    const entries = await listBackups(fx.store, 'vcsa', 'vc1');
    assert.equal(entries.length, expected, 'a backup vanished from the list');
    for (const e of entries) for (const a of e.manifest.artifacts) assert.ok(await fx.store.head(a.key), `${e.id} names ${a.key}, which does not exist`);
  };

  before(async () => {
    fx = await createFixture(['vc1']);
    logger = pino({ level: 'debug' }, new Writable({ write(chunk: Buffer, _enc, cb) { logLines.push(chunk.toString('utf8')); cb(); } }));
    ids = await Promise.all([generateIdentity(), generateIdentity(), generateIdentity()]);
    recipients = await Promise.all(ids.map((id) => identityToRecipient(id)));
    keyFiles = await Promise.all(
      ids.map(async (id, i) => {
        const file = join(fx.dir, `key-${i}.txt`);
        await writeFile(file, `# created: 2026-11-26T02:00:00Z\n# public key: ${recipients[i]!}\n${id}\n`, { mode: 0o600 });
        return file;
      }),
    );
    passFile = join(fx.dir, 'old-passphrase');
    await writeFile(passFile, `${oldPassphrase}\n`, { mode: 0o600 });
    // Three backups as the years left them: the old format, none, and age to a key since retired.
    const first = await fx.backup('vc1');
    legacy = await convertToLegacyFormat(fx.store, first.manifestKey, new Secret(oldPassphrase, 'test'));
    plain = await fx.backup('vc1');
    toOld = await fx.backup('vc1', { encryption: { recipients: [recipients[0]] } });
  });
  after(async () => {
    await fx?.close();
  });

  void test('--dry-run says what would change and why, and changes nothing', async () => {
    const before = await keysWithSizes();
    const result = await rekey(current(), { dryRun: true });
    assert.deepEqual(result.to, { algorithm: 'age', recipients: [recipients[1]], passphrase: null });
    const by = new Map(result.backups.map((b) => [b.id, b]));
    assert.deepEqual([...by.values()].map((b) => b.action), ['would-rekey', 'would-rekey', 'would-rekey']);
    assert.match(by.get(legacy.id)!.reason, /^aes-256-gcm-stream-v1 \(passphrase\); now age to /);
    assert.match(by.get(plain.manifest.id)!.reason, /^not encrypted; now age to /);
    assert.equal(by.get(toOld.manifest.id)!.reason, `age to ${recipients[0]!}; now age to ${recipients[1]!}`);
    assert.deepEqual(await keysWithSizes(), before);
  });

  void test('rekey: every backup re-encrypted to the current recipient, the old objects gone, a complete backup listed after every write', async () => {
    let checks = 0;
    const store = watched(fx.store, async () => {
      await everyBackupComplete(3);
      checks += 1;
    });
    const oldKeys = [legacy, plain.manifest, toOld.manifest].flatMap((m) => m.artifacts.map((a) => a.key));
    const result = await rekey(current(), { store });
    assert.deepEqual(result.backups.map((b) => [b.action, b.error?.message]), [['rekeyed', undefined], ['rekeyed', undefined], ['rekeyed', undefined]]);
    assert.ok(checks >= 3 * 4, `only ${checks} writes were checked`);
    for (const b of result.backups) {
      assert.ok(b.artifacts.every((a) => a.checked === 'decrypted'), 'the new objects were not decrypted back (the identity of the new recipient is configured)');
      const manifest = await readManifest(fx.store, `vcsa/vc1/${b.id}/manifest.json`);
      assert.ok(manifest.rekeyedAt);
      for (const a of manifest.artifacts) {
        assert.deepEqual(a.encryption, { algorithm: 'age', recipients: [recipients[1]], passphrase: null });
        assert.match(a.key, new RegExp(`^vcsa/vc1/${b.id}/rekey-\\d{8}T\\d{6}\\.\\d{3}Z/[A-Za-z_.]+\\.gz\\.age$`));
      }
    }
    const keys = (await keysWithSizes()).map((k) => k.split(' ')[0]);
    for (const k of oldKeys) assert.ok(!keys.includes(k), `${k} is still there`);
    assert.equal(keys.length, 3 * 3, 'objects other than 3 × (2 artifacts + manifest)');

    // The old-format backup, now age: Debian's age opens it with the new key alone…
    const rekeyed = await readManifest(fx.store, `vcsa/vc1/${legacy.id}/manifest.json`);
    const vcdb = rekeyed.artifacts.find((a) => a.name === 'vcdb')!;
    const object = join(fx.dir, 'rekeyed.sql.gz.age');
    await pipeline(await fx.store.get(vcdb.key), createWriteStream(object));
    const opened = spawnSync('bash', ['-c', `set -o pipefail; age -d -i ${keyFiles[1]!} ${object} | gunzip`], { maxBuffer: 256 * 1024 * 1024 });
    assert.equal(opened.status, 0, String(opened.stderr));
    assert.equal(createHash('sha256').update(opened.stdout).digest('hex'), vcdb.rawSha256);
    assert.notEqual(spawnSync('bash', ['-c', `age -d -i ${keyFiles[0]!} ${object} > /dev/null`]).status, 0, 'the retired key still opens it');
    // …and verify loads it with nothing but that identity configured.
    const report = await verifyBackup({ config: fx.config({ encryption: { recipients: [recipients[1]], identities: [{ file: keyFiles[1] }] } }), target: 'vc1', backup: legacy.id, store: fx.store, logger: silentLogger });
    assert.equal(report.ok, true, report.message);
  });

  void test('a second run finds every backup current and writes nothing', async () => {
    const store = watched(fx.store, () => Promise.resolve());
    const result = await rekey(current(), { store });
    assert.deepEqual(result.backups.map((b) => b.action), ['current', 'current', 'current']);
    assert.equal(store.mutations, 0);
  });

  void test('leftovers of an interrupted rekey are removed; a manifest changed meanwhile aborts before the switch and removes the new objects', async () => {
    const id = toOld.manifest.id;
    const manifestKey = `vcsa/vc1/${id}/manifest.json`;
    const stray = `vcsa/vc1/${id}/rekey-20000101T000000.000Z/postgres.sql.gz.age`;
    await fx.store.putBytes(stray, Buffer.from('left by a rekey that crashed'));
    const added = current({ encryption: { recipients: [recipients[1], recipients[2]], identities: [{ file: keyFiles[1] }] } });
    // Another writer touches the manifest while the new objects are uploaded.
    let interfered = false;
    const store = watched(fx.store, async (op, key) => {
      if (op !== 'putFile' || interfered) return;
      interfered = true;
      const m = await readManifest(fx.store, manifestKey);
      await fx.store.putBytes(manifestKey, Buffer.from(JSON.stringify({ ...m, completedAt: new Date().toISOString() }, null, 2)));
      assert.match(key, /\/rekey-/);
    });
    const before = await readManifest(fx.store, manifestKey);
    const [failed] = (await rekey(added, { backup: id, store })).backups;
    assert.equal(failed?.action, 'failed');
    assert.equal(failed?.error?.code, 'REKEY_CONFLICT', failed?.error?.message);
    const after = await readManifest(fx.store, manifestKey);
    assert.deepEqual(after.artifacts, before.artifacts, 'the manifest was switched anyway');
    const keys = (await keysWithSizes()).map((k) => k.split(' ')[0]).filter((k) => k?.includes(`/${id}/`));
    assert.deepEqual(keys.sort(), [...before.artifacts.map((a) => a.key), manifestKey].sort(), 'stray or new objects left behind');

    const [done] = (await rekey(added, { backup: id })).backups;
    assert.equal(done?.action, 'rekeyed', done?.error?.message);
    assert.deepEqual((await readManifest(fx.store, manifestKey)).artifacts.map((a) => a.encryption), [0, 1].map(() => ({ algorithm: 'age', recipients: [recipients[1], recipients[2]], passphrase: null })));
  });

  void test('waits for the target lock, and gives up after quiesce.waitSeconds with TARGET_BUSY (nothing written)', async () => {
    const lock = await acquireTargetLock(fx.redis, { prefix: fx.prefix, target: 'vc1', holder: 'test-backup', ttlMs: 30_000, logger: silentLogger, purpose: 'backup' });
    try {
      const store = watched(fx.store, () => Promise.resolve());
      const result = await rekey(current({ quiesce: { waitSeconds: 1 } }), { backup: plain.manifest.id, store });
      assert.equal(result.backups[0]?.error?.code, 'TARGET_BUSY');
      assert.match(result.backups[0]?.error?.message ?? '', /a backup by test-backup is running/);
      assert.equal(store.mutations, 0);
    } finally {
      await lock.release();
    }
  });

  void test('with a passphrase only: a backup under an older passphrase is re-encrypted, one under the current one is left alone', async () => {
    const newPassFile = join(fx.dir, 'new-passphrase');
    await writeFile(newPassFile, `new-${hex}-passphrase\n`, { mode: 0o600 });
    // A small work factor: each derivation at age's 18 takes seconds on a loaded machine, and this is about the rotation.
    const older = await fx.backup('vc1', { encryption: { passphrase: { file: passFile }, passphraseWorkFactor: 12 } });
    const rotated = { encryption: { passphrase: { file: newPassFile }, previousPassphrases: [{ file: passFile }], passphraseWorkFactor: 12 } };
    const [first] = (await rekey(rotated, { backup: older.manifest.id })).backups;
    assert.equal(first?.action, 'rekeyed', first?.error?.message);
    assert.equal(first?.reason, 'age with an older passphrase; now encryption.passphrase');
    const [again] = (await rekey(rotated, { backup: older.manifest.id, dryRun: true })).backups;
    assert.equal(again?.action, 'current');
  });

  void test('the CLI: --dry-run --json, and exit 2 naming the field when there is nothing to encrypt to', async () => {
    const config = join(fx.dir, 'fleet.yaml');
    await writeFile(config, fx.yaml(current()));
    const dry = await runCli(['rekey', '--target', 'vc1', '--dry-run', '--json', '--config', config]);
    assert.equal(dry.code, 0, dry.stderr);
    const doc = JSON.parse(dry.stdout) as RekeyResult;
    assert.equal(doc.dryRun, true);
    assert.equal(doc.backups.length, 4);
    const none = join(fx.dir, 'none.yaml');
    await writeFile(none, fx.yaml());
    const refused = await runCli(['rekey', '--target', 'vc1', '--config', none]);
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, /encryption: rekey re-encrypts backups to encryption\.recipients/);

    for (const secret of [...ids, oldPassphrase, hex]) {
      assert.ok(![dry.stdout, dry.stderr, logLines.join('')].some((text) => text.includes(secret)), 'a key or passphrase in the output or logs');
    }
  });
});
