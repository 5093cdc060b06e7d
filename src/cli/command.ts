import type { ParseArgsConfig } from 'node:util';
import type { Config } from '../config/load.ts';
import type { ConfigRole } from '../config/roles.ts';
import type { Logger } from '../log.ts';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;
export type OptionValues = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** Exit codes (DESIGN §6): 0 success, 1 the job failed, 2 bad input. */
export const exitCodes = { ok: 0, failed: 1, badInput: 2 } as const;

export interface CliContext {
  readonly values: OptionValues;
  readonly positionals: readonly string[];
  /** --json: print exactly one JSON document on stdout; human text and logs go to stderr. */
  readonly json: boolean;
  readonly logger: Logger;
  /** Loads --config (default ./fleet.yaml, or $VCSA_BACKUP_CONFIG) once, validated. */
  config(): Config;
  /** Aborted on the first SIGINT/SIGTERM; later signals never cut short the start of services. */
  readonly signal: AbortSignal;
  /** Writes to stdout (the JSON document or human output). */
  readonly out: (text: string) => void;
  /** Human progress and messages, on stderr. */
  readonly say: (text: string) => void;
  /** True when stderr is a terminal (live progress lines). */
  readonly tty: boolean;
}

export interface CliCommand {
  readonly name: string;
  readonly summary: string;
  /** Usage line after `vcsa-backup <name>`. */
  readonly usage: string;
  readonly options: OptionSpec;
  /** Settings this command uses beyond the common ones, checked when it loads the config (config/roles.ts). */
  readonly needs?: readonly ConfigRole[];
  /** Subcommands it takes as positionals (`lease release`); commands without take none. */
  readonly subcommands?: readonly string[];
  /** Log level when neither --log-level nor LOG_LEVEL is given (default info). */
  readonly defaultLogLevel?: string;
  run(ctx: CliContext): Promise<number>;
}

/** Reads a string option, or throws a usage error naming it. */
export function stringOption(values: OptionValues, name: string): string | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new UsageError(`--${name}: expects a value`);
  return v;
}

export function stringList(values: OptionValues, name: string): string[] {
  const v = values[name];
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [v]).map((x) => {
    if (typeof x !== 'string') throw new UsageError(`--${name}: expects a value`);
    return x;
  });
}

export function requiredString(values: OptionValues, name: string, hint: string): string {
  const v = stringOption(values, name);
  if (v === undefined || v === '') throw new UsageError(`--${name}: required; ${hint}`);
  return v;
}

/**
 * A whole number option, written in decimal digits: `Number()` alone would take "" (an empty
 * `--port=`) as 0, " 80" as 80 and "0x50" as 80.
 */
export function intOption(values: OptionValues, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const v = stringOption(values, name);
  if (v === undefined) return undefined;
  const n = /^-?\d{1,16}$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`--${name}: expected an integer from ${min} ${max === Number.MAX_SAFE_INTEGER ? 'and up' : `to ${max}`}, got \`${v}\``);
  }
  return n;
}

/** Bad arguments: exit 2, nothing touched. */
export class UsageError extends Error {
  readonly code = 'USAGE';
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}
