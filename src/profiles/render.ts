import type { DumpSpec, Profile, ServiceSpec } from './profile.ts';

const placeholder = /\{\{([A-Z][A-Z0-9_]*)\}\}/g;

/** Quotes a value for a POSIX shell unless it is plainly safe. */
export function shellQuote(value: string): string {
  if (value === '') return "''";
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(value)) return value;
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** Variables of a profile with a target's overrides, each expanded (variables may use others). */
export function resolveVariables(profile: Profile, overrides: Readonly<Record<string, string>>): Record<string, string> {
  const raw: Record<string, string> = { ...profile.variables, ...overrides };
  const resolved: Record<string, string> = {};
  const expand = (name: string, seen: readonly string[]): string => {
    const done = resolved[name];
    if (done !== undefined) return done;
    const value = raw[name];
    if (value === undefined) throw new Error(`unknown variable {{${name}}}`);
    if (seen.includes(name)) throw new Error(`variable {{${name}}} refers to itself (${[...seen, name].join(' -> ')})`);
    const out = value.replace(placeholder, (_m, inner: string) => expand(inner, [...seen, name]));
    resolved[name] = out;
    return out;
  };
  for (const name of Object.keys(raw)) expand(name, []);
  return resolved;
}

/** Every `{{NAME}}` a command uses that is neither a variable nor one of `extra`. */
export function unknownPlaceholders(command: string, variables: Readonly<Record<string, string>>, extra: readonly string[] = []): string[] {
  const unknown = new Set<string>();
  for (const match of command.matchAll(placeholder)) {
    const name = match[1] ?? '';
    if (!(name in variables) && !extra.includes(name)) unknown.add(name);
  }
  return [...unknown];
}

/** Substitutes `{{NAME}}` with shell-quoted values. */
export function renderCommand(command: string, variables: Readonly<Record<string, string>>): string {
  return command.replace(placeholder, (_m, name: string) => {
    const value = variables[name];
    if (value === undefined) throw new Error(`command uses unknown variable {{${name}}}`);
    return shellQuote(value);
  });
}

/** A profile bound to one target: commands ready to run. */
export interface ResolvedProfile {
  readonly name: string;
  readonly variables: Readonly<Record<string, string>>;
  readonly services: readonly ServiceSpec[];
  readonly dumps: readonly DumpSpec[];
}

/** Renders every command except restore's `{{FILE}}`, which is known only at restore time. */
export function bindProfile(profile: Profile, overrides: Readonly<Record<string, string>>): ResolvedProfile {
  const variables = resolveVariables(profile, overrides);
  const withFile = (command: string): string => renderCommand(command, { ...variables, FILE: '\u0000FILE\u0000' });
  return {
    name: profile.name,
    variables,
    services: profile.services.map((s) => ({
      name: s.name,
      stop: renderCommand(s.stop, variables),
      start: renderCommand(s.start, variables),
      status: renderCommand(s.status, variables),
    })),
    dumps: profile.dumps.map((d) => ({
      ...d,
      dump: renderCommand(d.dump, variables),
      restore: withFile(d.restore),
      ...(d.database
        ? {
            database: {
              env: renderCommand(d.database.env, variables),
              name: renderCommand(d.database.name, variables),
              psql: renderCommand(d.database.psql, variables),
              pgRestore: renderCommand(d.database.pgRestore, variables),
            },
          }
        : {}),
    })),
  };
}

/** Puts the appliance path of an uploaded dump into a bound restore command. */
export function restoreCommand(dump: DumpSpec, applianceFile: string): string {
  return dump.restore.replace(/'?\u0000FILE\u0000'?/g, shellQuote(applianceFile));
}
