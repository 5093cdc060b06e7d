#!/usr/bin/env node
// Entry point of the `vcsa-backup` command: TypeScript sources run through tsx, no build step.
import { register } from 'tsx/esm/api';

// The SDK warns on every start that releases after early 2027 need Node 22; README says so once.
process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';
register();
const { main } = await import('../workers/cli.ts');
process.exitCode = await main(process.argv.slice(2));
