#!/usr/bin/env node
import { main } from '../dist/cli/main.js';

// `adopt ... | head` closes the pipe early: stop quietly, as other command-line tools do
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e) => { if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0); else throw e; });
}
main(process.argv).then((code) => { process.exitCode = code; });
