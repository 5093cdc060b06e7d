import type { ErrorCode } from './error-codes.ts';

/**
 * Errors meant for an operator. Each carries a stable `code` (for scripts, metrics and the
 * dashboard), a message that says what went wrong and what to do, and whether retrying can
 * help. `permanent` errors (bad config, refused authentication, a changed host key) fail a
 * queued job at once instead of burning its retries.
 */
export interface BackupErrorOptions {
  readonly permanent?: boolean;
  readonly cause?: unknown;
  /** Extra, non-secret facts for logs and JSON output. */
  readonly details?: Record<string, unknown>;
}

export class BackupError extends Error {
  readonly code: ErrorCode;
  readonly permanent: boolean;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: BackupErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BackupError';
    this.code = code;
    this.permanent = options.permanent ?? false;
    this.details = options.details ?? {};
  }
}

/** Bad configuration or arguments: exit code 2, nothing touched. */
export class ConfigError extends BackupError {
  readonly issues: readonly string[];
  constructor(issues: readonly string[], options: BackupErrorOptions = {}) {
    super('CONFIG_INVALID', issues.join('\n'), { ...options, permanent: true });
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

/** An appliance command exited non-zero. The message quotes the tail of its stderr. */
export class CommandFailedError extends BackupError {
  constructor(
    readonly command: string,
    readonly exitCode: number | null,
    readonly stderrTail: string,
    options: BackupErrorOptions & { signal?: string | null } = {},
  ) {
    const how = exitCode === null ? `was killed by ${options.signal ?? 'a signal'}` : `exited with code ${exitCode}`;
    const tail = stderrTail.trim();
    super('COMMAND_FAILED', `\`${describeCommand(command)}\` ${how}${tail ? `: ${tail}` : ' (no stderr output)'}`, {
      ...options,
      details: { exitCode, ...(options.details ?? {}) },
    });
    this.name = 'CommandFailedError';
  }
}

export class CommandTimeoutError extends BackupError {
  constructor(readonly command: string, readonly timeoutMs: number, stderrTail: string) {
    super(
      'COMMAND_TIMEOUT',
      `\`${describeCommand(command)}\` did not finish within ${timeoutMs} ms and was stopped` +
        (stderrTail.trim() ? `: ${stderrTail.trim()}` : '') +
        '. Raise the timeout in the profile or target if the appliance is just slow.',
    );
    this.name = 'CommandTimeoutError';
  }
}

export class AbortedError extends BackupError {
  constructor(what: string, reason?: unknown) {
    super('ABORTED', `${what} was cancelled${reason instanceof Error ? `: ${reason.message}` : typeof reason === 'string' ? `: ${reason}` : ''}`);
    this.name = 'AbortedError';
  }
}

/** Commands are long shell lines; keep error messages readable. */
export function describeCommand(command: string): string {
  const oneLine = command.replace(/\s+/g, ' ').trim();
  return oneLine.length > 160 ? `${oneLine.slice(0, 157)}...` : oneLine;
}

export function errorCode(err: unknown): ErrorCode {
  return err instanceof BackupError ? err.code : 'INTERNAL';
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function isPermanent(err: unknown): boolean {
  return err instanceof BackupError && err.permanent;
}

/** Joins cleanup failures to the primary one instead of dropping them. */
export function combineErrors(primary: unknown, cleanup: readonly unknown[]): unknown {
  if (cleanup.length === 0) return primary;
  const extra = cleanup.map(errorMessage).join('; ');
  if (primary === undefined) return cleanup.length === 1 ? cleanup[0] : new AggregateError(cleanup, extra);
  if (primary instanceof BackupError) {
    return new BackupError(primary.code, `${primary.message} (and during cleanup: ${extra})`, {
      permanent: primary.permanent,
      cause: primary,
      details: primary.details,
    });
  }
  return new AggregateError([primary, ...cleanup], `${errorMessage(primary)} (and during cleanup: ${extra})`);
}
