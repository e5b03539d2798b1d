import { execFileSync } from 'node:child_process';
import { ConfigError } from '../errors.js';

/**
 * The GPUs of this machine: those CUDA_VISIBLE_DEVICES names when it is set, else the indices
 * nvidia-smi lists; none without either.
 */
export function detectGpus(env: NodeJS.ProcessEnv = process.env): string[] {
  const visible = env.CUDA_VISIBLE_DEVICES;
  if (visible !== undefined) return visible.split(',').map((id) => id.trim()).filter((id) => id !== '' && id !== '-1');
  try {
    const out = execFileSync('nvidia-smi', ['--query-gpu=index', '--format=csv,noheader'], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore'] });
    return out.split('\n').map((line) => line.trim()).filter((line) => /^\d+$/.test(line));
  } catch {
    return [];
  }
}

/**
 * The GPU slots of a sweep: disjoint sets of `ranks` GPUs, one per run running at once; null when
 * runs get no GPUs of their own (no GPU, or `gpus: none`). `gpus` is the sweep's setting, `found`
 * what detectGpus gave.
 */
export function gpuSlots(gpus: 'auto' | 'none' | Array<number | string>, ranks: number, found: () => string[] = detectGpus): string[][] | null {
  if (gpus === 'none') return null;
  const ids = gpus === 'auto' ? found() : gpus.map(String);
  if (ids.length === 0) {
    if (gpus === 'auto') return null;
    throw new ConfigError('gpus: the list is empty');
  }
  if (new Set(ids).size !== ids.length) throw new ConfigError(`gpus: ${ids.join(',')} names a GPU twice`);
  if (ids.length < ranks) {
    throw new ConfigError(`each run has ${ranks} ranks but only ${ids.length} GPU${ids.length > 1 ? 's are' : ' is'} available (${ids.join(',')}); lower ranks, or set gpus: none to share them`);
  }
  const slots: string[][] = [];
  for (let first = 0; first + ranks <= ids.length; first += ranks) slots.push(ids.slice(first, first + ranks));
  return slots;
}

/** Hands out GPU slots to runs as they start and takes them back as they end. */
export class SlotPool {
  private readonly free: string[][];

  constructor(slots: string[][]) {
    this.free = [...slots];
  }

  take(): string[] {
    const slot = this.free.shift();
    if (!slot) throw new Error('no free GPU slot: more runs at once than slots'); // the pool never starts more runs than slots
    return slot;
  }

  give(slot: string[]): void {
    this.free.push(slot);
  }

  /** The environment a run on `slot` gets: its GPUs only, renumbered from 0 for the worker. */
  static env(slot: string[]): Record<string, string> {
    return { CUDA_VISIBLE_DEVICES: slot.join(',') };
  }
}
