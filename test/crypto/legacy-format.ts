/**
 * Backups as versions before age stored them: each gzip encrypted in the aes-256-gcm-stream-v1
 * format (`….gz.enc`), the manifest recording its parameters. No config writes that format any
 * more; restore, verify and rekey must still read it.
 */
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Manifest, ManifestArtifact } from '../../src/backup/manifest.ts';
import { readManifest } from '../../src/catalog/catalog.ts';
import type { Secret } from '../../src/config/secret.ts';
import { createEncryptStream } from '../../src/crypto/encrypt-stream.ts';
import type { ObjectStore } from '../../src/storage/object-store.ts';

/** Rewrites an unencrypted stored backup in the old format, in place; returns its new manifest. */
export async function convertToLegacyFormat(store: ObjectStore, manifestKey: string, passphrase: Secret): Promise<Manifest> {
  const manifest = await readManifest(store, manifestKey);
  const artifacts: ManifestArtifact[] = [];
  for (const a of manifest.artifacts) {
    if (a.encryption) throw new Error(`${a.key} is already encrypted`);
    const encrypt = createEncryptStream(passphrase);
    const sealed: Buffer[] = [];
    await pipeline(Readable.from([await store.getBytes(a.key)]), encrypt, new Writable({ write: (chunk: Buffer, _e, cb) => void (sealed.push(chunk), cb()) }));
    const key = `${a.key}.enc`;
    const put = await store.putBytes(key, Buffer.concat(sealed), { contentType: 'application/octet-stream' });
    artifacts.push({ ...a, file: `${a.file}.enc`, key, bytes: put.bytes, sha256: put.sha256, encryption: encrypt.info });
    await store.deleteMany([a.key]);
  }
  const legacy: Manifest = { ...manifest, artifacts };
  await store.putBytes(manifestKey, Buffer.from(JSON.stringify(legacy, null, 2)), { contentType: 'application/json' });
  return legacy;
}
