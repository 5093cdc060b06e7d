import type { StderrTail } from './output.ts';

const pidMarker = 'vcsa-backup-pid:';

/** A command line as one single-quoted shell word. */
export function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/**
 * Wraps a command for a remote shell (sshd's, or `sh -c` in a container) so that it can be
 * stopped as a whole: the wrapper reports its pid on stderr, then execs the command with bash
 * (sh where bash is missing) under that same pid. Where that pid leads a process group (sshd
 * starts each session with setsid), `kill -- -PID` reaches everything the command started.
 *
 * With `watchParent`, a watcher kills the group when the wrapper's parent (sshd's session
 * process) goes away, so a dropped connection does not leave a dump running on the appliance.
 */
export function remoteCommand(command: string, options: { watchParent?: boolean } = {}): string {
  const quoted = shellQuote(command);
  const lines = [`printf '${pidMarker}%s\\n' "$$" >&2`];
  if (options.watchParent ?? true) {
    lines.push(
      `( while kill -0 "$PPID" 2>/dev/null && kill -0 "$$" 2>/dev/null; do sleep 1; done; kill -0 "$$" 2>/dev/null && kill -TERM -- -"$$" ) </dev/null >/dev/null 2>&1 &`,
    );
  }
  lines.push(`if command -v bash >/dev/null 2>&1; then exec bash --norc -c ${quoted}; else exec sh -c ${quoted}; fi`);
  return lines.join('\n');
}

/**
 * The shell command that stops a wrapped command by the pid it reported: its process group,
 * else the process. No `--`: dash's kill does not take it. Group 1 would mean "every process".
 */
export function killCommand(pid: number, signal: 'TERM' | 'KILL'): string {
  if (!Number.isInteger(pid) || pid <= 1) throw new Error(`refusing to signal pid ${pid}`);
  return `kill -${signal} -${pid} 2>/dev/null || kill -${signal} ${pid} 2>/dev/null; true`;
}

export interface PidPreamble {
  /** The wrapper's pid, once its first stderr line arrived. */
  readonly pid: number | undefined;
  /** Called once when the pid becomes known. */
  onPid: (() => void) | undefined;
  push(chunk: Buffer): void;
  /** Hands anything still held back to the stderr tail (the command ended). */
  flush(): void;
}

/**
 * Splits the wrapper's pid line off the start of stderr; everything else goes to the tail.
 * Login scripts may print to stderr first, so the marker is looked for, not assumed at byte 0.
 */
export function parsePidPreamble(tail: StderrTail): PidPreamble {
  let held: Buffer | undefined = Buffer.alloc(0);
  const state: PidPreamble = {
    pid: undefined,
    onPid: undefined,
    push(chunk: Buffer): void {
      if (held === undefined) {
        tail.push(chunk);
        return;
      }
      held = Buffer.concat([held, chunk]);
      // latin1 keeps one character per byte, so indexes map back onto the buffer.
      const match = new RegExp(`${pidMarker}(\\d+)\\n`).exec(held.toString('latin1'));
      if (match) {
        const before = held.subarray(0, match.index);
        const after = held.subarray(match.index + match[0].length);
        held = undefined;
        if (before.length > 0) tail.push(before);
        if (after.length > 0) tail.push(after);
        (state as { pid: number | undefined }).pid = Number(match[1]);
        state.onPid?.();
      } else if (held.length > 16 * 1024) {
        tail.push(held);
        held = undefined;
      }
    },
    flush(): void {
      if (held && held.length > 0) tail.push(held);
      held = undefined;
    },
  };
  return state;
}
