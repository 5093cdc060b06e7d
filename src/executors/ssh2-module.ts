import { createRequire } from 'node:module';
import type * as Ssh2 from 'ssh2';

const require = createRequire(import.meta.url);

/**
 * The ssh2 module, loaded on first use. Every command reads the config and may build an
 * executor, but only ssh targets and the native backups' SFTP receiver need ssh2, whose 40-odd
 * files each process loaded at start. ssh2 is CommonJS, so a synchronous require keeps the
 * config check and `new Client()` synchronous.
 */
export function ssh2(): typeof Ssh2 {
  // require caches the module: the first call loads it, the others look it up.
  return require('ssh2') as typeof Ssh2;
}
