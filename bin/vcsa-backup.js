#!/usr/bin/env node
// Entry point of the `vcsa-backup` command: TypeScript sources run through tsx, no build step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../workers/cli.ts');
process.exitCode = await main(process.argv.slice(2));
