import { parseArgs } from 'node:util';
import { existsSync } from 'node:fs';
import { loadConfig, type Config } from '../config/load.ts';
import { checkRoleSettings } from '../config/roles.ts';
import { BackupError, ConfigError, errorCode, errorMessage } from '../errors.ts';
import { createLogger } from '../log.ts';
import { exitCodes, UsageError, type CliCommand, type CliContext, type OptionSpec } from './command.ts';

export type CommandRegistry = Record<string, () => Promise<{ command: CliCommand }>>;

/**
 * Commands of the domain, one line each; each module exports `command`. Loaded lazily so
 * `--help` stays fast. Commands that talk to the queues live in workers/ and are added by
 * workers/cli.ts, the composition root (src/ never imports BullMQ).
 */
export const domainCommands: CommandRegistry = {
  backup: () => import('./commands/backup.ts'),
  simulate: () => import('./commands/simulate.ts'),
  'simulate-native-appliance': () => import('./commands/simulate-native-appliance.ts'),
  'trust-host-key': () => import('./commands/trust-host-key.ts'),
  'iam-policy': () => import('./commands/iam-policy.ts'),
  's3-setup': () => import('./commands/s3-setup.ts'),
  's3-server': () => import('./commands/s3-server.ts'),
  list: () => import('./commands/list.ts'),
  restore: () => import('./commands/restore.ts'),
  'restore-stage': () => import('./commands/restore-stage.ts'),
  verify: () => import('./commands/verify.ts'),
  prune: () => import('./commands/prune.ts'),
  rekey: () => import('./commands/rekey.ts'),
};

const globalOptions: OptionSpec = {
  config: { type: 'string', short: 'c' },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
  'log-level': { type: 'string' },
};

function usage(commands: CommandRegistry): string {
  return [
    'usage: vcsa-backup <command> [--config fleet.yaml] [--json] [options]',
    '',
    'commands:',
    ...Object.keys(commands).sort().map((c) => `  ${c}`),
    '',
    'Run `vcsa-backup <command> --help` for its options. Exit codes: 0 ok, 1 the job failed, 2 bad input.',
  ].join('\n');
}

function defaultConfigPath(): string {
  return process.env['VCSA_BACKUP_CONFIG'] ?? 'fleet.yaml';
}

/** Where a command's output goes: the process's streams, or a test's buffers (runCliInProcess). */
export interface CliIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

const processIo: CliIo = {
  stdout: (text) => void process.stdout.write(text),
  stderr: (text) => void process.stderr.write(text),
};

export async function main(argv: readonly string[], extraCommands: CommandRegistry = {}, io: CliIo = processIo): Promise<number> {
  const commands: CommandRegistry = { ...domainCommands, ...extraCommands };
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.stderr(`${usage(commands)}\n`);
    return name === undefined ? exitCodes.badInput : exitCodes.ok;
  }
  const loader = commands[name];
  if (!loader) {
    io.stderr(`vcsa-backup: unknown command "${name}"\n\n${usage(commands)}\n`);
    return exitCodes.badInput;
  }
  const { command } = await loader();
  const json = rest.includes('--json');
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: [...rest], options: { ...globalOptions, ...command.options }, allowPositionals: command.subcommands !== undefined, strict: true, tokens: true });
  } catch (err) {
    return reportError(new UsageError(`${errorMessage(err)}\nusage: vcsa-backup ${command.name} ${command.usage}`), json, io);
  }
  const values = parsed.values;
  if (values['help'] === true) {
    io.stdout(`vcsa-backup ${command.name} ${command.usage}\n\n${command.summary}\n`);
    return exitCodes.ok;
  }
  const repeated = repeatedOptions(parsed.tokens ?? [], { ...globalOptions, ...command.options });
  if (repeated.length > 0) {
    return reportError(new UsageError(`${repeated.map((o) => `--${o}: given more than once; ${command.name} takes one`).join('\n')}\nusage: vcsa-backup ${command.name} ${command.usage}`), json, io);
  }
  const level = logLevel(values['log-level'], process.env['LOG_LEVEL'], command.defaultLogLevel);
  if (level instanceof UsageError) return reportError(level, json, io);
  const logger = createLogger({ level }).child({ command: command.name });

  const controller = new AbortController();
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    signals += 1;
    if (signals === 1) {
      logger.warn({ signal: sig }, 'stopping: finishing or cancelling the current step; services will be started again');
      controller.abort(new BackupError('ABORTED', `received ${sig}`));
    } else {
      // Exiting now could leave an appliance quiesced: the services are being started again.
      logger.warn({ signal: sig }, 'still stopping: starting services and releasing the lease first; SIGKILL forces (the watchdog then restarts the appliance)');
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let config: Config | undefined;
  const ctx: CliContext = {
    values,
    positionals: parsed.positionals,
    json: values['json'] === true,
    logger,
    signal: controller.signal,
    tty: io === processIo && process.stderr.isTTY === true,
    config() {
      if (config) return config;
      const path = typeof values['config'] === 'string' ? values['config'] : defaultConfigPath();
      if (!existsSync(path)) {
        throw new ConfigError([`--config: ${path} does not exist; pass --config PATH (or set VCSA_BACKUP_CONFIG)`]);
      }
      const loaded = loadConfig(path);
      checkRoleSettings(loaded, command.needs ?? []);
      config = loaded;
      return config;
    },
    out: (text) => void io.stdout(text.endsWith('\n') ? text : `${text}\n`),
    say: (text) => void io.stderr(text.endsWith('\n') ? text : `${text}\n`),
  };
  try {
    return await command.run(ctx);
  } catch (err) {
    if (!(err instanceof UsageError || err instanceof ConfigError)) logger.error({ err }, 'command failed');
    return reportError(err, ctx.json, io);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** --log-level, else LOG_LEVEL, else the command's default; a bogus one is bad input naming its source. */
function logLevel(option: unknown, env: string | undefined, fallback: string | undefined): string | UsageError {
  const [value, source] = typeof option === 'string' ? [option, '--log-level'] : env !== undefined && env !== '' ? [env, 'LOG_LEVEL (environment)'] : [fallback ?? 'info', 'default'];
  if (logLevels.includes(value)) return value;
  return new UsageError(`${source}: unknown log level ${JSON.stringify(value)}; use one of ${logLevels.join(', ')}`);
}

/**
 * Options given twice that take one value: parseArgs keeps the last one silently, and
 * `restore --target vc01 --target vc02` must not quietly restore vc02. Booleans repeated are harmless.
 */
function repeatedOptions(tokens: readonly { kind: string; name?: string }[], spec: OptionSpec): string[] {
  const seen = new Map<string, number>();
  for (const t of tokens) {
    if (t.kind !== 'option' || t.name === undefined) continue;
    const option = spec[t.name];
    if (!option || option.type !== 'string' || option.multiple === true) continue;
    seen.set(t.name, (seen.get(t.name) ?? 0) + 1);
  }
  return [...seen.entries()].filter(([, n]) => n > 1).map(([name]) => name);
}

function reportError(err: unknown, json: boolean, io: CliIo): number {
  const bad = err instanceof UsageError || err instanceof ConfigError;
  const code = err instanceof UsageError ? 'USAGE' : errorCode(err);
  if (json) {
    io.stdout(`${JSON.stringify({ error: { code, message: errorMessage(err) } })}\n`);
  }
  io.stderr(`vcsa-backup: ${errorMessage(err)}\n`);
  return bad ? exitCodes.badInput : exitCodes.failed;
}
