import { createHash } from 'node:crypto';
import type { CliContext } from '../src/cli/command.ts';
import type { Config } from '../src/config/load.ts';
import { errorMessage } from '../src/errors.ts';
import type { BackupJobResult } from '../src/fleet/backup-job.ts';
import { createS3ObjectStore } from '../src/storage/s3.ts';

/**
 * The demo's drill on one fresh backup: download every artifact and check it against the
 * manifest's size and sha256.
 */
export async function runDrill(ctx: CliContext, config: Config, backup: BackupJobResult): Promise<{ ok: boolean; detail: string }> {
  const store = createS3ObjectStore(config.s3, ctx.logger);
  try {
    const checked: string[] = [];
    for (const a of backup.artifacts) {
      const hash = createHash('sha256');
      let bytes = 0;
      for await (const chunk of await store.get(a.key)) {
        hash.update(chunk as Buffer);
        bytes += (chunk as Buffer).length;
      }
      const sha = hash.digest('hex');
      if (sha !== a.sha256 || bytes !== a.bytes) return { ok: false, detail: `${a.key}: stored ${bytes} bytes sha256 ${sha}, manifest says ${a.bytes} bytes ${a.sha256}` };
      checked.push(a.name);
    }
    return { ok: true, detail: `downloaded and checked ${checked.join(', ')} of ${backup.id}` };
  } catch (err) {
    return { ok: false, detail: errorMessage(err) };
  } finally {
    store.close();
  }
}
