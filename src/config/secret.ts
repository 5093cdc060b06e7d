import { readFileSync } from 'node:fs';
import { inspect } from 'node:util';

/**
 * A secret value from the config (S3 keys, passwords, passphrases). It prints, logs and
 * serialises as "**redacted**"; only `reveal()` returns the value, at the one place that
 * hands it to a client library.
 */
export class Secret {
  readonly #value: string;
  /** Where it came from, for error messages ("env AWS_SECRET_ACCESS_KEY"); never the value. */
  readonly source: string;

  constructor(value: string, source: string) {
    this.#value = value;
    this.source = source;
  }

  reveal(): string {
    return this.#value;
  }

  toString(): string {
    return '**redacted**';
  }

  toJSON(): string {
    return '**redacted**';
  }

  [inspect.custom](): string {
    return `Secret(${this.source})`;
  }
}

/** How a secret is written in fleet.yaml. Inline values work but env or file is the norm. */
export type SecretRef = string | { env: string } | { file: string };

export function resolveSecret(ref: SecretRef, field: string, env: NodeJS.ProcessEnv): Secret {
  if (typeof ref === 'string') return new Secret(ref, `inline value of ${field}`);
  if ('env' in ref) {
    const value = env[ref.env];
    if (value === undefined || value === '') {
      throw new Error(`${field}: environment variable ${ref.env} is not set; export it or use { file: PATH }`);
    }
    return new Secret(value, `env ${ref.env}`);
  }
  let text: string;
  try {
    text = readFileSync(ref.file, 'utf8');
  } catch (err) {
    throw new Error(`${field}: cannot read secret file ${ref.file} (${(err as NodeJS.ErrnoException).code ?? 'error'}); check the path and its permissions`);
  }
  // Secret files conventionally end with a newline (`echo secret > file`); it is not part of the secret.
  return new Secret(text.replace(/\r?\n$/, ''), `file ${ref.file}`);
}
