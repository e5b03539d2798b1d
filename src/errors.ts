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
