import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { basename, isAbsolute, resolve as resolvePath } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ResolvedConfig } from '../config/resolve.js';
import { isPluginRef, type PluginRef } from '../config/schema.js';
import { ConfigError, TrqatError } from '../errors.js';
import type { StepDecision } from './decision.js';

// Scheduling as code (README, "Scheduling as code"): a target-TR schedule, a TALR rule, or the whole
// decision, written by the user. The built-in ones implement the same interfaces (builtins.ts), and
// TrController uses only these: one path.

/** What a plug-in knows about the run, fixed once the first rank said how large the model is. */
export interface PluginContext {
  /** Steps of the whole run. */
  readonly totalSteps: number;
  readonly stepsPerEpoch: number;
  /** Weights of each quantized layer, in the worker's layer order. */
  readonly layerSizes: readonly number[];
  /** The run's resolved config (`tr.r0`, `tr.talr.u0`, `optimizer.lr`, ...). */
  readonly config: ResolvedConfig;
  /** `m` and `eta` in force (explicit, the paper's defaults, or `tr.auto`). */
  readonly momentum: number;
  readonly eta: number;
}

/**
 * A plug-in that keeps state between steps returns it from `stateDict()` (JSON: numbers, strings,
 * arrays, plain objects) and takes it back in `loadStateDict()`: checkpoints hold it, so a resume
 * continues exactly. A stateless plug-in has neither.
 */
export interface Stateful {
  stateDict?(): unknown;
  loadStateDict?(state: unknown): void;
}

/** (a) The target TR: `R(step)` of a run of `total` steps, finite and >= 0. */
export interface TrSchedulePlugin extends Stateful {
  /** Names the plug-in in errors; the module's file name when not set. */
  name?: string;
  target(step: number, total: number, context: PluginContext): number;
}

/** What a TALR rule sees at one step. Rates are transitions per weight. */
export interface TalrInput {
  step: number;
  total: number;
  /** This step's target. */
  R: number;
  /** Measured network-wide TR; null on a fresh run's first step (nothing measured yet). */
  k: number | null;
  /** Network-wide running TR. */
  K: number;
  /** Per-layer transition counts and measured rates (null when k is null). */
  counts: readonly number[] | null;
  rates: readonly number[] | null;
  /** Per-layer running TR under `tr.scope: layer`, else null. */
  K_layers: readonly number[] | null;
}

/** (b) A TALR rule: U for the quantized weights, one number for all, or one per layer. */
export interface TalrPlugin extends Stateful {
  name?: string;
  update(input: TalrInput, context: PluginContext): number | readonly number[];
}

/** What a whole-decision plug-in sees at one step. */
export interface ControllerInput {
  step: number;
  total: number;
  /** Measured network-wide TR and per-layer counts and rates; null on a fresh run's first step. */
  k: number | null;
  counts: readonly number[] | null;
  rates: readonly number[] | null;
  /** The ordinary LR schedule's value at this step. */
  lrOther: number;
}

/** The decision of a step but for what was measured (`step`, `k`): the controller adds those. */
export type ControllerOutput = Omit<StepDecision, 'step' | 'k'>;

/** (c) The whole decision: K, R, U and the LRs, as the built-in controller makes it. */
export interface ControllerPlugin extends Stateful {
  name?: string;
  decide(input: ControllerInput, context: PluginContext): ControllerOutput;
}

export type PluginRole = 'schedule' | 'talr' | 'controller';
type PluginOf<R extends PluginRole> = { schedule: TrSchedulePlugin; talr: TalrPlugin; controller: ControllerPlugin }[R];
/** A module's export: called once per run with the config's arguments (the keys beside `module`). */
export type PluginFactory<P> = (args: Record<string, unknown>, context: PluginContext) => P;

/** The method each role must have, and where it is set. */
const ROLES: Record<PluginRole, { method: string; key: string; what: string }> = {
  schedule: { method: 'target', key: 'tr.schedule', what: 'a target-TR schedule' },
  talr: { method: 'update', key: 'tr.talr', what: 'a TALR rule' },
  controller: { method: 'decide', key: 'the controller option', what: 'a controller' },
};

/** Which code decided: run.json and every checkpoint hold it, so a resume can tell if it changed. */
export interface PluginIdentity {
  role: PluginRole;
  name: string;
  /** The module's absolute path; null for an object passed to train() by a program. */
  module: string | null;
  /** sha256 of the module file when it was loaded. */
  sha256: string | null;
}

/** A plug-in ready to be created for a run. */
export interface PluginSource<R extends PluginRole = PluginRole> {
  identity: PluginIdentity;
  create(context: PluginContext): PluginOf<R>;
}

export type Plugins = { [R in PluginRole]?: PluginSource<R> };

/** A plug-in failed or decided something that cannot be sent: names the plug-in and the step. */
export class PluginError extends TrqatError {
  constructor(identity: PluginIdentity, step: number | null, problem: string) {
    const where = identity.module ? ` (${identity.module})` : '';
    super(`${ROLES[identity.role].what} plug-in "${identity.name}"${where}${step === null ? '' : ` at step ${step}`}: ${problem}; nothing was sent to the ranks`);
  }
}

/** The options of train(), resume(), serve() and runScript() that replace parts of the controller. */
export interface PluginOptions {
  /** The target-TR schedule (instead of `tr.schedule`): a plug-in, or a factory of one. */
  schedule?: TrSchedulePlugin | PluginFactory<TrSchedulePlugin>;
  /** The TALR rule (instead of `tr.talr`). */
  talr?: TalrPlugin | PluginFactory<TalrPlugin>;
  /** The whole decision (instead of both). */
  controller?: ControllerPlugin | PluginFactory<ControllerPlugin>;
}

export const sha256File = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');

/**
 * The plug-ins of a run: from the options (a program's objects) and the config (`{module: path, ...args}`).
 * A module is imported here (asynchronously), its plug-in created when the run's size is known.
 */
export async function loadPlugins(config: ResolvedConfig, options: PluginOptions = {}): Promise<Plugins> {
  const plugins: Plugins = {};
  const refs: Record<'schedule' | 'talr', unknown> = { schedule: config.tr.schedule, talr: config.tr.talr };
  for (const role of ['schedule', 'talr'] as const) {
    const given = options[role];
    const ref = refs[role];
    if (given !== undefined && isPluginRef(ref)) {
      throw new ConfigError(`${ROLES[role].key}.module (${ref.module}) and the ${role} option of the program both give ${ROLES[role].what}: give one`);
    }
    if (given !== undefined) plugins[role] = fromObject(role, given) as never;
    else if (isPluginRef(ref)) plugins[role] = (await fromModule(role, ref)) as never;
  }
  if (options.controller !== undefined) {
    const also = (['schedule', 'talr'] as const).filter((role) => plugins[role]);
    if (also.length > 0) throw new ConfigError(`a controller plug-in makes the whole decision: it cannot be combined with ${also.map((r) => ROLES[r].key).join(' and ')}`);
    plugins.controller = fromObject('controller', options.controller);
  }
  return plugins;
}

/** The plug-ins' identities, as run.json and checkpoints hold them. */
export const identities = (plugins: Plugins): PluginIdentity[] => Object.values(plugins).map((source) => source.identity);

function fromObject<R extends PluginRole>(role: R, given: PluginOf<R> | PluginFactory<PluginOf<R>>): PluginSource<R> {
  const name = typeof given === 'function' ? given.name || role : (given.name ?? role);
  const identity: PluginIdentity = { role, name, module: null, sha256: null };
  return {
    identity,
    create: (context) => checked(role, identity, typeof given === 'function' ? callFactory(identity, given, {}, context) : given),
  };
}

async function fromModule<R extends PluginRole>(role: R, ref: PluginRef): Promise<PluginSource<R>> {
  const { module, ...args } = ref;
  const path = isAbsolute(module) ? module : resolvePath(module);
  const key = `${ROLES[role].key}.module`;
  let sha256: string;
  try {
    sha256 = sha256File(path);
  } catch (error) {
    throw new ConfigError(`${key}: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); give the path of a JavaScript module (.mjs), relative to the config file`);
  }
  let exports: Record<string, unknown>;
  try {
    // The hash in the URL: a file changed within this process is imported again, not from the cache.
    exports = (await import(`${pathToFileURL(path).href}?sha256=${sha256}`)) as Record<string, unknown>;
  } catch (error) {
    throw new ConfigError(`${key}: cannot load ${path}: ${(error as Error).message}`);
  }
  const factory = exports[role];
  if (typeof factory !== 'function') {
    const names = Object.keys(exports);
    throw new ConfigError(
      `${key}: ${path} must export a function "${role}(args, context)" that returns ${ROLES[role].what} (an object with ${ROLES[role].method}()); ` +
        `it exports ${names.length > 0 ? names.join(', ') : 'nothing'}${typeof factory === 'undefined' ? '' : ` ("${role}" is a ${typeof factory})`} (README, "Scheduling as code")`,
    );
  }
  const identity: PluginIdentity = { role, name: basename(path), module: path, sha256 };
  return { identity, create: (context) => checked(role, identity, callFactory(identity, factory as PluginFactory<PluginOf<R>>, args, context)) };
}

function callFactory<P>(identity: PluginIdentity, factory: PluginFactory<P>, args: Record<string, unknown>, context: PluginContext): P {
  try {
    return factory(args, context);
  } catch (error) {
    throw new PluginError(identity, null, `creating it failed: ${(error as Error).message}`);
  }
}

/** The created plug-in has the role's method, and both state methods or neither. */
function checked<R extends PluginRole>(role: R, identity: PluginIdentity, plugin: PluginOf<R>): PluginOf<R> {
  const { method } = ROLES[role];
  const object = plugin as unknown as Record<string, unknown> | null;
  if (object === null || typeof object !== 'object' || typeof object[method] !== 'function') {
    throw new PluginError(identity, null, `it must be an object with a method ${method}(), got ${object === null ? 'null' : typeof object}`);
  }
  if (typeof object.stateDict !== typeof object.loadStateDict) {
    throw new PluginError(identity, null, 'it has one of stateDict() and loadStateDict() but not the other: a resume needs both (or neither, when it keeps no state)');
  }
  if (typeof object.name === 'string' && object.name.length > 0) identity.name = object.name;
  return plugin;
}

/**
 * Calls one of a plug-in's methods: what it throws becomes a PluginError naming it and the step.
 * A method returning a number is checked here (finite, >= 0).
 */
export function callPlugin<T>(identity: PluginIdentity, step: number | null, what: string, action: () => T): T {
  let value: T;
  try {
    value = action();
  } catch (error) {
    if (error instanceof PluginError) throw error;
    throw new PluginError(identity, step, `${what} threw: ${(error as Error)?.message ?? String(error)}`);
  }
  if (typeof value === 'number' && !(Number.isFinite(value) && value >= 0)) {
    throw new PluginError(identity, step, `${what} returned ${value} (it must be a finite number >= 0)`);
  }
  return value;
}

/**
 * Why the recorded plug-ins (a checkpoint's) differ from the ones loaded now, or [] when they are
 * the same code. A changed file is allowed with `allowChanged` (and said by the caller).
 */
export function pluginChanges(recorded: readonly PluginIdentity[] | undefined, now: readonly PluginIdentity[]): string[] {
  const before = recorded ?? [];
  const changes: string[] = [];
  for (const role of ['schedule', 'talr', 'controller'] as const) {
    const a = before.find((p) => p.role === role);
    const b = now.find((p) => p.role === role);
    if (!a && !b) continue;
    if (!a) changes.push(`${ROLES[role].what} plug-in "${b!.name}" is given now, the run was trained without one`);
    else if (!b) changes.push(`the run was trained with ${ROLES[role].what} plug-in "${a.name}"${a.module ? ` (${a.module})` : ''}, none is given now${a.module ? '' : ' (pass it to resume() again)'}`);
    else if (a.sha256 !== b.sha256 || a.module !== b.module) {
      changes.push(`${ROLES[role].what} plug-in ${b.module ?? `"${b.name}"`} changed (sha256 ${short(a.sha256)} at the checkpoint, ${short(b.sha256)} now)`);
    }
  }
  return changes;
}

const short = (hash: string | null) => (hash === null ? 'none' : hash.slice(0, 12));
