// Where the project's Python side lives (native/), from the built or the source tree alike.
import { fileURLToPath } from 'node:url';

export const NATIVE_DIR = fileURLToPath(new URL('../../native', import.meta.url));
