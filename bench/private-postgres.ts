/**
 * A PostgreSQL cluster of the bench's own, for fleets larger than the machine's server takes: a
 * running simulated appliance keeps three connections open (vpxd one, the inventory service two),
 * so 200 of them need about 600, against the Debian default of 100. The cluster lives in a
 * temporary directory, listens on loopback only, trusts local connections and does not fsync
 * (nothing in it outlives the bench). PostgreSQL refuses to run as root: it runs as `postgres`.
 */
import { execFileSync } from 'node:child_process';
import { chownSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { defaultPgBin } from '../src/sim/postgres.ts';

export interface PrivatePostgres {
  /** Admin URL (trust auth), as the simulator's `pgUrl`. */
  readonly url: string;
  stop(): Promise<void>;
}

function owner(): { uid: number; gid: number } {
  const line = execFileSync('getent', ['passwd', 'postgres'], { encoding: 'utf8' }).trim();
  const [, , uid, gid] = line.split(':');
  if (uid === undefined || gid === undefined) throw new Error('bench: no `postgres` user on this machine to run a private PostgreSQL cluster');
  return { uid: Number(uid), gid: Number(gid) };
}

export async function startPrivatePostgres(port: number, maxConnections: number, pgBin = defaultPgBin): Promise<PrivatePostgres> {
  const dir = await mkdtemp(join(tmpdir(), 'bench-pg-'));
  const data = join(dir, 'data');
  const asPostgres = userInfo().uid === 0 ? ['runuser', '-u', 'postgres', '--'] : [];
  const run = (bin: string, args: string[]): void => {
    const [cmd, ...rest] = [...asPostgres, join(pgBin, bin), ...args];
    execFileSync(cmd ?? bin, rest, { stdio: ['ignore', 'ignore', 'pipe'] });
  };
  if (asPostgres.length > 0) {
    const { uid, gid } = owner();
    chownSync(dir, uid, gid);
  }
  const options = [
    `-p ${port}`,
    '-c listen_addresses=127.0.0.1',
    `-c unix_socket_directories=${dir}`,
    `-c max_connections=${maxConnections}`,
    '-c fsync=off',
    '-c synchronous_commit=off',
    '-c full_page_writes=off',
    '-c max_wal_size=4GB',
  ].join(' ');
  run('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  run('pg_ctl', ['-D', data, '-o', options, '-l', join(dir, 'server.log'), '-w', '-t', '60', 'start']);
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async stop() {
      try {
        run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
}
