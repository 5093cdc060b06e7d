#!/usr/bin/env -S node --max-semi-space-size=4
// Entry point of the `vcsa-backup` command: TypeScript sources run through tsx, no build step.
// The shebang caps V8's young generation at 4 MiB per semi-space (default 16): a worker at rest
// then holds about 30 MiB less, and short-lived buffers of a multi-gigabyte backup are freed
// sooner (issue 11's memory goal). `node bin/vcsa-backup.js` runs without it.
import { register } from 'tsx/esm/api';

// The SDK warns on every start that releases after early 2027 need Node 22; README says so once.
process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';
register();
const { main } = await import('../workers/cli.ts');
process.exitCode = await main(process.argv.slice(2));
