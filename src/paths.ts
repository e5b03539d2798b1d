import { fileURLToPath } from 'node:url';

/** The package's root folder (holds python/, configs/, .venv/), from src/ or dist/ alike. */
export const PACKAGE_ROOT = fileURLToPath(new URL('..', import.meta.url));
