import { relative } from 'node:path';
import { BaseSequencer, type TestSpecification } from 'vitest/node';
import { defineConfig } from 'vitest/config';

/**
 * The longest files, longest first (issue 20): on 2 workers the suite lasts at least as long as its
 * longest file, and a long file that starts last runs alone at the end. vitest's own order knows
 * durations only from a cache (none on a fresh clone; shared between checkouts through a linked
 * node_modules) and otherwise starts the largest files first, which are not the longest ones.
 * Files not named here follow vitest's order, after these.
 */
const LONGEST_FIRST = [
  'test/e2e/bench.test.ts',
  'test/e2e/ranks.test.ts',
  'test/e2e/failures.test.ts',
  'test/e2e/disk-full.test.ts',
  'test/e2e/dashboard-browser.test.ts',
  'test/sweep/sweep.test.ts',
  'test/e2e/plugin.test.ts',
  'test/e2e/scheduling-code.test.ts',
  'test/e2e/run.test.ts',
  'test/e2e/export.test.ts',
  'test/e2e/dashboard.test.ts',
  'test/e2e/resume-checks.test.ts',
  'test/e2e/released.test.ts',
];

class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const base = await super.sort(files);
    const rank = (spec: TestSpecification) => {
      const index = LONGEST_FIRST.indexOf(relative(spec.project.config.root, spec.moduleId).split('\\').join('/'));
      return index < 0 ? LONGEST_FIRST.length : index;
    };
    return base.map((spec, order) => ({ spec, order, rank: rank(spec) })).sort((a, b) => a.rank - b.rank || a.order - b.order).map(({ spec }) => spec);
  }
}

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/forkserver-setup.ts'],
    // End-to-end tests start real Python workers: give them time, and keep the 2 cores for them.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    maxWorkers: 2,
    sequence: { sequencer: LongestFirst },
  },
});
