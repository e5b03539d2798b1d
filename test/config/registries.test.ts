// Names both halves must agree on: the models and datasets the controller's schema accepts are the
// ones the Python side builds, and the dataset shapes resolveConfig gives the model are the ones
// data.py loads (and checks its files against).
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { pythonPath, resolvePython } from '../../src/bridge/launcher.js';
import { FIXED_DATASET_SHAPES } from '../../src/config/resolve.js';
import { DATASET_NAMES, MODEL_NAMES } from '../../src/config/schema.js';

const SNIPPET = `
import json
from trqat.data import DATASETS
from trqat.models import MODELS
print(json.dumps({"models": list(MODELS), "datasets": DATASETS}))
`;

describe('the registries of the controller and the Python side', () => {
  const python = JSON.parse(
    execFileSync(resolvePython(null), ['-c', SNIPPET], { env: { ...process.env, PYTHONPATH: pythonPath() }, encoding: 'utf8' }),
  ) as { models: string[]; datasets: Record<string, [number, number, number] | null> };

  it('model.name: the schema lists the models of python/trqat/models.py', () => {
    expect([...MODEL_NAMES].sort()).toEqual([...python.models].sort());
  });

  it('data.name: the schema lists the datasets of python/trqat/data/formats.py', () => {
    expect([...DATASET_NAMES].sort()).toEqual(Object.keys(python.datasets).sort());
  });

  it('the fixed dataset shapes are the same on both sides', () => {
    const fixed = Object.fromEntries(
      Object.entries(python.datasets)
        .filter(([, shape]) => shape !== null)
        .map(([name, shape]) => [name, { channels: shape![0], classes: shape![1], size: shape![2] }]),
    );
    expect(fixed).toEqual(FIXED_DATASET_SHAPES);
  });
});
