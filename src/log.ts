import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

/**
 * Paths that may hold secrets anywhere in a log object. Config values that are secrets are
 * `Secret` instances (they serialise as "**redacted**"), this is the second line of defence.
 */
const redactPaths = [
  'password', '*.password', 'secretAccessKey', '*.secretAccessKey', 'passphrase', '*.passphrase',
  'accessKeyId', '*.accessKeyId', 'privateKey', '*.privateKey', 'token', '*.token', 'env.*',
  'credentials', '*.credentials', 'authorization', '*.authorization', 'headers.authorization',
];

/** JSON logs on stderr, so that `--json` output on stdout stays machine-clean. */
export function createLogger(options: { level?: string; name?: string } = {}): Logger {
  return pino(
    {
      name: options.name ?? 'vcsa-backup',
      level: options.level ?? process.env['LOG_LEVEL'] ?? 'info',
      redact: { paths: redactPaths, censor: '**redacted**' },
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    pino.destination({ fd: 2, sync: true }),
  );
}

/** A logger that drops everything; for tests and library use. */
export const silentLogger: Logger = pino({ level: 'silent' });
