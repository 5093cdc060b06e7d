import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { defaultPgBin } from '../../src/sim/postgres.ts';
import type { SimAppliance } from '../../src/sim/appliance.ts';

/**
 * A directory to point the vcsa-5.5 profile's INVSVC_SCRIPTS at, so that a dump pair taken while
 * the services run is certain to disagree instead of depending on the simulator's tick: its
 * backup.sh waits until vpxd's progress has reached the inventory database past where the VCDB
 * stood (what a running appliance does between the two dumps), then runs the appliance's own.
 */
export async function disagreeingInventoryScripts(dir: string, sim: SimAppliance): Promise<string> {
  const scripts = join(dir, `waiting-invsvc-scripts-${sim.name}`);
  await mkdir(scripts, { recursive: true });
  const psql = (url: string, query: string): string => `${defaultPgBin}/psql -XAt ${JSON.stringify(url)} -c ${JSON.stringify(query)}`;
  await writeFile(
    join(scripts, 'backup.sh'),
    `#!/bin/bash\nv=$(${psql(sim.vcdbUrl, 'SELECT coalesce(max(seq), 0) FROM vpx_event')})\n` +
      `until [ "$(${psql(sim.inventoryUrl, 'SELECT coalesce(max(seq), 0) FROM inv_progress')})" -gt "$v" ]; do sleep 0.05; done\n` +
      `exec ${JSON.stringify(join(sim.root, 'usr/lib/vmware-vpx/inventoryservice/scripts/backup.sh'))} "$@"\n`,
  );
  await chmod(join(scripts, 'backup.sh'), 0o755);
  return scripts;
}
