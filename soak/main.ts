/**
 * `npm run soak -- --minutes N --appliances M [--workers W] [--seed S] [--drills D] [--json FILE]`:
 * the chaos soak (soak/soak.ts). Prints its figures; exits 1 when an invariant was violated.
 */
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { formatReport, runSoak } from './soak.ts';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '5' },
    appliances: { type: 'string', default: '8' },
    workers: { type: 'string', default: '3' },
    seed: { type: 'string' },
    drills: { type: 'string' },
    json: { type: 'string' },
  },
});
const number = (name: string, raw: string | undefined, min: number): number => {
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min) {
    process.stderr.write(`soak: --${name}: expected a number ≥ ${min}, got \`${raw ?? ''}\`\n`);
    process.exit(2);
  }
  return n;
};
const appliances = number('appliances', values.appliances, 1);
// SIGINT/SIGTERM end the soak early but cleanly: the current run finishes, the checks run and
// everything started (workers, appliances and their databases, Redis, the tmpfs) is removed.
const stop = new AbortController();
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => stop.abort());
const report = await runSoak({
  seconds: Math.round(number('minutes', values.minutes, 0.1) * 60),
  appliances,
  workers: number('workers', values.workers, 2),
  ...(values.seed !== undefined ? { seed: number('seed', values.seed, 0) } : {}),
  drills: values.drills !== undefined ? number('drills', values.drills, 0) : appliances,
  signal: stop.signal,
  log: (line) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`),
});
process.stdout.write(`${formatReport(report)}\n`);
if (values.json) await writeFile(values.json, `${JSON.stringify(report, null, 2)}\n`);
process.exitCode = report.violations.length === 0 ? 0 : 1;
