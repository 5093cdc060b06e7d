import { readFile } from 'node:fs/promises';
import type { CatalogEntry } from '../catalog/catalog.ts';
import type { Config } from '../config/load.ts';
import { decryptionKeys } from '../crypto/key-ring.ts';
import { errorCode, errorMessage } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { CheckResult } from '../restore/consistency.ts';
import { fetchArtifacts, type FetchedArtifact } from '../restore/fetch-artifacts.ts';
import { createWorkDir } from '../restore/work-dir.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { parseNativeMetadata } from './appliance-backup.ts';

export interface NativeVerifyResult {
  readonly checksums: 'ok' | 'mismatch' | 'not checked';
  readonly checks: CheckResult[];
  readonly problems: string[];
}

/**
 * `verify` of a vcsa-native backup: a vCenter archive cannot be loaded anywhere but a fresh
 * appliance, so the drill checks what can be checked without one — every object against the
 * manifest (size and sha256, decrypted and decompressed back to the appliance's bytes), then the
 * archive's own metadata read back: version and build, parts, and its file list (names, sizes,
 * sha256 where listed) against what the manifest holds.
 */
export async function verifyNativeBackup(input: { config: Config; entry: CatalogEntry; store: ObjectStore; logger: Logger; signal?: AbortSignal; workRoot?: string }): Promise<NativeVerifyResult> {
  const { config, entry, store, signal } = input;
  const manifest = entry.manifest;
  const native = manifest.native;
  const problems: string[] = [];
  const checks: CheckResult[] = [];
  let checksums: NativeVerifyResult['checksums'] = 'not checked';
  const work = await createWorkDir(input.workRoot ?? config.spool.dir, 'verify');
  try {
    let fetched: FetchedArtifact[] = [];
    try {
      fetched = await fetchArtifacts(store, manifest, work.dir, { ...(signal ? { signal } : {}), keys: decryptionKeys(config.encryption) });
      checksums = 'ok';
    } catch (err) {
      if (signal?.aborted) throw err;
      checksums = errorCode(err) === 'RESTORE_CHECKSUM_MISMATCH' ? 'mismatch' : 'not checked';
      problems.push(errorMessage(err));
      return { checksums, checks, problems };
    }
    const check = (name: string, ok: boolean, message: string, values: Record<string, string> = {}): void => {
      checks.push({ name, status: ok ? 'pass' : 'fail', values, message });
      if (!ok) problems.push(`${name}: ${message}`);
    };
    if (!native) {
      check('native-manifest', false, 'the manifest has no native section; it was not written by a vcsa-native backup');
      return { checksums, checks, problems };
    }
    const metaFile = fetched.find((f) => f.artifact.name === native.metadataFile || f.artifact.file === native.metadataFile);
    if (!native.metadataFile || !metaFile) {
      checks.push({ name: 'archive-metadata', status: 'skipped', values: {}, message: 'the appliance wrote no backup-metadata.json; checksums only' });
      return { checksums, checks, problems };
    }
    let meta: ReturnType<typeof parseNativeMetadata>;
    try {
      meta = parseNativeMetadata(await readFile(metaFile.path, 'utf8'));
    } catch (err) {
      check('archive-metadata', false, `backup-metadata.json does not parse: ${errorMessage(err)}`);
      return { checksums, checks, problems };
    }
    check(
      'archive-version',
      (meta.version === undefined || meta.version === native.applianceVersion) && (meta.build === undefined || meta.build === native.applianceBuild),
      `archive says ${meta.version ?? '?'} build ${meta.build ?? '?'}, manifest says ${native.applianceVersion} build ${native.applianceBuild}`,
      { archive: `${meta.version ?? '?'}/${meta.build ?? '?'}`, manifest: `${native.applianceVersion}/${native.applianceBuild}` },
    );
    if (meta.parts) {
      const a = [...meta.parts].sort().join(',');
      const m = [...native.parts].sort().join(',');
      check('archive-parts', a === m, a === m ? `parts ${a}` : `archive holds parts ${a}, manifest says ${m}`, { archive: a, manifest: m });
    }
    if (meta.encrypted !== undefined) {
      check('archive-password', meta.encrypted === native.passwordProtected, `archive ${meta.encrypted ? 'is' : 'is not'} password-protected; manifest says ${native.passwordProtected ? 'it is' : 'it is not'}`);
    }
    if (meta.files) {
      const stored = new Map(manifest.artifacts.map((a) => [a.name, a]));
      const wrong: string[] = [];
      for (const f of meta.files) {
        const a = stored.get(f.name);
        if (!a) wrong.push(`${f.name} missing`);
        else if (f.size !== undefined && a.rawBytes !== f.size) wrong.push(`${f.name} has ${a.rawBytes} bytes, archive says ${f.size}`);
        else if (f.sha256 !== undefined && a.rawSha256 !== f.sha256) wrong.push(`${f.name} sha256 differs from the archive's`);
      }
      const extra = manifest.artifacts.filter((a) => a.name !== native.metadataFile && !meta.files?.some((f) => f.name === a.name)).map((a) => `${a.name} not in the archive's list`);
      wrong.push(...extra);
      check('archive-files', wrong.length === 0, wrong.length === 0 ? `${meta.files.length} files match the archive's list` : wrong.join('; '), { files: String(meta.files.length) });
    }
    return { checksums, checks, problems };
  } finally {
    await work.remove();
  }
}
