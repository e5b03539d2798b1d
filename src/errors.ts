/** An error the user can act on: the CLI prints its message alone (no stack) and exits non-zero. */
export class TrqatError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
    this.name = new.target.name;
  }
}

/** A config that cannot be used: exit code 2, like any usage error. */
export class ConfigError extends TrqatError {
  constructor(message: string) {
    super(message, 2);
  }
}

/**
 * A file could not be written: a full disk, a quota, a read-only or vanished folder.
 * The message names the file and the cause, e.g. "cannot write runs/x/run.json: no space left on
 * device (ENOSPC)".
 */
export class WriteError extends TrqatError {
  constructor(
    readonly path: string,
    cause: unknown,
  ) {
    super(`cannot write ${path}: ${describeCause(cause)}`);
  }
}

/** "no space left on device (ENOSPC)" from Node's "ENOSPC: no space left on device, write". */
function describeCause(cause: unknown): string {
  const error = cause as NodeJS.ErrnoException;
  if (error instanceof WriteError) return error.message.slice(`cannot write ${error.path}: `.length);
  const code = typeof error?.code === 'string' ? error.code : null;
  const text = String(error?.message ?? cause)
    .replace(/^[A-Z]+: /, '')
    .replace(/, \w+( '.*')?( -> '.*')?$/, '');
  return code ? `${text} (${code})` : text;
}
