import { adoptModelBits, controllerSettings, type ResolvedConfig } from '../config/resolve.js';
import type { WorkerBody } from '../bridge/protocol.js';
import type { RunPolicy } from './policy.js';
import type { RunPlan } from './record.js';

/** A run's plan from the first ready: the plan, the config it runs with (which may follow the model), what to warn about. */
export type Planned = { plan: RunPlan; config: ResolvedConfig; configChanged: boolean; warnings: string[] } | { refuse: string; warnings?: string[] };

/** Pure: the plan of a run of `policy`'s kind for the first rank's ready, or that rank's refusal. */
export function planRun(policy: RunPolicy, config: ResolvedConfig, body: WorkerBody<'ready'>, worldSize: number): Planned {
  const length = policy.length(config, body);
  if ('refuse' in length) return length;
  const { total } = length;
  const start = body.start_step;
  if (start >= total) return { refuse: `the run continues at step ${start}, but it has only ${total} steps`, warnings: length.warnings };
  const adopted = adoptModelBits(config, body.layers, policy.adoptsModelBits);
  return {
    plan: {
      total_steps: total,
      steps_per_epoch: body.steps_per_epoch,
      eval_every: length.evalEvery,
      checkpoint_every: length.checkpointEvery,
      world_size: worldSize,
      controller: controllerSettings(adopted.config, total),
    },
    config: adopted.config,
    configChanged: adopted.config !== config,
    warnings: [...length.warnings, ...adopted.warnings],
  };
}
