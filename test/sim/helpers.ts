import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { waitFor } from '../support/poll.ts';

export interface BashResult {
  readonly exitCode: number;
  readonly stdout: Buffer;
  readonly stderr: string;
}

/** Runs a command line the way the local executor does: bash -c. Never throws on exit codes. */
export function bash(command: string): Promise<BashResult> {
  return new Promise((resolve, reject) => {
    execFile('/bin/bash', ['-c', command], { encoding: 'buffer', maxBuffer: 256 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') {
        reject(new Error(`cannot run bash: ${err.message}`, { cause: err }));
        return;
      }
      resolve({ exitCode: err ? Number(err.code) : 0, stdout, stderr: stderr.toString('utf8') });
    });
  });
}

/** Alive and not a zombie (orphaned daemons may be reaped late by this machine's init). */
export function processAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

export { waitFor };

export function readPid(path: string): number {
  return Number(readFileSync(path, 'utf8').trim());
}
