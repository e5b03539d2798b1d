// `trqat run`: a signal that arrives during start-up, after trqat's handlers are in place but before
// the script is started, reaches the script once it is started (it used to be swallowed: the script
// then trained to the end, as if trqat had not been asked to stop). Issue 19.
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { RunProcess } from '../../src/bridge/launcher.js';
import type { RunScriptOptions, RunScriptResult } from '../../src/entry/serve.js';

const sent: string[] = [];
let before: NodeJS.Signals[] = [];

vi.mock('../../src/entry/serve.js', () => ({
  serve: vi.fn(),
  // The run's start-up: the signals of the test arrive before the script is spawned.
  runScript: async (_config: unknown, _command: string[], options: RunScriptOptions): Promise<RunScriptResult> => {
    for (const signal of before) process.emit(signal, signal);
    await new Promise((resolve) => setImmediate(resolve));
    const script = { stop: (signal: NodeJS.Signals = 'SIGTERM') => void sent.push(signal) } as unknown as RunProcess;
    options.onSpawn?.([script]);
    return { runDir: '/nowhere', exit: { code: null, signal: 'SIGTERM' }, exitCode: 143, summary: null, error: null, stdout: '', stderr: '' };
  },
}));

const { runCommand } = await import('../../src/cli/client-run.js');

afterEach(() => {
  sent.length = 0;
});

describe('trqat run: signals during start-up', () => {
  it.each([
    [['SIGTERM'], ['SIGTERM']],
    [['SIGHUP'], ['SIGHUP']],
    [['SIGINT'], ['SIGINT']], // not from a terminal here; from one, the script was not there to get it either
    [['SIGTERM', 'SIGTERM', 'SIGTERM'], ['SIGKILL']],
  ] as [NodeJS.Signals[], string[]][])('%j before the script starts: the script gets %j once started', async (signals, expected) => {
    before = signals;
    const quiet = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      expect(await runCommand(['python', 'train.py'], null, [])).toBe(143);
    } finally {
      quiet.mockRestore();
    }
    expect(sent).toEqual(expected);
  });
});
