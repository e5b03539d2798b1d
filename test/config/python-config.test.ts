// The Python tests build workers from python/tests/base_config.json: the controller's own resolved
// config, so the worker is tested against exactly what it receives. This test regenerates the file
// (vitest -u) and fails when the schema and the file drift apart.
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';

/** Small and fast: a 12x12 synthetic task, ResNet-20, CPU. */
export const PYTHON_TEST_OVERRIDES = [
  'data.name=synthetic',
  'data.root=/nonexistent',
  'data.batch_size=16',
  'data.eval_batch_size=32',
  'data.num_workers=0',
  'data.synthetic={train_size: 64, test_size: 48, image_size: 12, channels: 1, num_classes: 4}',
  'optimizer.lr=0.05',
  'worker.device=cpu',
  'worker.threads=1', // the workers the tests start run beside others: 2 threads would spin-wait for a busy core
  'train.diagnostics_every=0',
];

describe('the Python tests\' base config', () => {
  it('is the controller\'s resolved config (regenerate with: npx vitest run test/config/python-config.test.ts -u)', async () => {
    const config = loadConfig(null, PYTHON_TEST_OVERRIDES);
    await expect(`${JSON.stringify(config, null, 2)}\n`).toMatchFileSnapshot('../../python/tests/base_config.json');
  });
});
