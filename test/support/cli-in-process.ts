/**
 * Runs the `vcsa-backup` CLI inside the test process: the same `main` as bin/vcsa-backup.js,
 * with its output captured and the environment replaced for the call. Far cheaper than a
 * process per command line (tsx's start-up is most of a CLI run), which is what lets a corpus
 * of a hundred command lines stay within seconds. Calls must not overlap (process.env and the
 * streams are shared): await each one.
 */
import { main } from '../../workers/cli.ts';

export interface InProcessResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

let running = false;

export async function runCliInProcess(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<InProcessResult> {
  if (running) throw new Error('runCliInProcess: calls must not overlap');
  running = true;
  const saved = { ...process.env };
  const out: string[] = [];
  const err: string[] = [];
  // Logs (pino) go straight to fd 2: silent unless the case sets LOG_LEVEL.
  for (const key of Object.keys(process.env)) delete process.env[key];
  Object.assign(process.env, { PATH: saved['PATH'], HOME: saved['HOME'], LOG_LEVEL: 'silent', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' }, env);
  for (const [key, value] of Object.entries(env)) if (value === undefined) delete process.env[key];
  try {
    const code = await main(args, { stdout: (t) => void out.push(t), stderr: (t) => void err.push(t) });
    return { code, stdout: out.join(''), stderr: err.join('') };
  } finally {
    for (const key of Object.keys(process.env)) delete process.env[key];
    Object.assign(process.env, saved);
    running = false;
  }
}
