import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BackupError } from '../errors.ts';

/**
 * A private directory for downloaded dumps, under the spool directory (sized for dumps, unlike
 * /tmp on many hosts). Returns the directory and its undo.
 */
export async function createWorkDir(root: string | undefined, purpose: 'restore' | 'verify' | 'rekey'): Promise<{ dir: string; remove: () => Promise<void> }> {
  const base = root ?? tmpdir();
  try {
    await mkdir(base, { recursive: true, mode: 0o700 });
    const dir = await mkdtemp(join(base, `${purpose}-`));
    return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
  } catch (err) {
    throw new BackupError('SPOOL_UNWRITABLE', `cannot create a ${purpose} directory under ${base} (${(err as NodeJS.ErrnoException).code ?? 'error'}); set spool.dir to a writable directory with room for the dumps`, { permanent: true, cause: err });
  }
}
