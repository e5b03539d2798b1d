// Run.open: a run whose processes cannot be started ends as failed, its folder free, nothing left running.
import { describe, expect, it } from 'vitest';
import { createRunDir, lockRunDir } from '../../src/files.js';
import { Run } from '../../src/run/run.js';
import { readRun, tinyConfig } from '../support/helpers.js';

describe('Run.open', () => {
  it('marks the run failed when starting its processes throws, and frees its folder', async () => {
    const config = tinyConfig();
    const runDir = createRunDir(config);
    const launchRanks = async (): Promise<void> => {
      throw new Error('cannot start the ranks: no free port');
    };
    await expect(Run.open({ kind: 'managed', runDir, config, checkpoint: null, launchRanks }, {})).rejects.toThrow(/no free port/);
    const { info } = readRun(runDir);
    expect(info.status).toBe('failed');
    expect(info.error).toMatch(/no free port/);
    lockRunDir(runDir)(); // the lock was released: another controller may take the folder
  });
});
