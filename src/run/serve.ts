import { join } from 'node:path';
import { constants as osConstants } from 'node:os';
import { execa } from 'execa';
import { controllerSettings, r0ForLayers, type ResolvedConfig } from '../config/resolve.js';
import { TrqatError } from '../errors.js';
import type { ControllerBodies, WorkerBody } from '../bridge/protocol.js';
import { ClientHub, type ClientHubHandler, type ClientSession, type Outcome } from '../bridge/client-hub.js';
import { TrController, type ControllerState, type StepDecision } from '../schedules/controller.js';
import { createRunDir, writeJsonAtomic } from './files.js';
import { scriptEnv } from '../bridge/worker-process.js';
import { MetricsLog, StepRate, stepRecord, type EvalRecord, type StepStats } from './metrics.js';
import type { RunEvent, RunInfo, RunPlan, RunSummary } from './train.js';

/**
 * Client runs: the user's own training script drives the steps, this controller decides every
 * step's LRs and keeps the run record. The run folder is the same as a managed run's (config.json,
 * run.json, metrics.jsonl, summary.json; no checkpoints: the script saves its own, with the
 * controller state from `client.state_dict()`).
 */

/** `stopped`: the script said bye (or exited cleanly) before the last step, or the run was stopped. */
export type ClientRunStatus = 'running' | 'completed' | 'stopped' | 'failed';

export interface ClientInfo {
  sid: string;
  rank: number;
  world_size: number;
  pid: number;
  hostname: string;
  device: string;
  torch_version: string;
  trqat_version: string;
}

/** How the user's command ended (`trqat run`). */
export interface ScriptExit {
  code: number | null;
  signal: string | null;
}

/** run.json of a client run: a managed run's fields, plus the clients and the command. */
export interface ClientRunInfo extends Omit<RunInfo, 'status'> {
  status: ClientRunStatus;
  mode: 'client';
  /** Steps decided so far (the next step to run). */
  step: number;
  clients: ClientInfo[];
  command?: string[];
  exit?: ScriptExit;
}

export interface ServeSummary extends Omit<RunSummary, 'status'> {
  status: 'completed' | 'stopped';
}

export type ServeEvent =
  | RunEvent
  | { type: 'listening'; endpoint: string; runDir: string }
  | { type: 'client'; client: ClientInfo }
  | { type: 'client-left'; client: ClientInfo; reason: string };

export interface ServeOptions {
  onEvent?: (event: ServeEvent) => void;
  /** Aborting stops the run: clients get `stop: true` with their next LRs, the run closes as "stopped". */
  signal?: AbortSignal;
  /** Recorded in run.json (trqat run). */
  command?: string[];
  /** After a stop, how long clients get to say bye before the run is closed anyway (default 30 s). */
  stopGraceMs?: number;
}

export interface ServeHandle {
  /** The endpoint clients connect to (TRQAT_ENDPOINT). */
  endpoint: string;
  runDir: string;
  /** Resolves when the run ends (every client said bye, or it was stopped); rejects when it failed. */
  done: Promise<ServeSummary>;
  /** Stops the run (like aborting `signal`). */
  stop(): void;
  /** The process that runs the clients exited: closes the run if it is still open. */
  processExited(exit: ScriptExit): void;
}

/** The run failed: a client crashed, went silent, or the script exited with an error. */
export class ClientRunFailure extends TrqatError {}

/** Decisions kept for ranks that ask for a step after the first rank did (data-parallel ranks run in lockstep). */
const DECISION_WINDOW = 1024;
const DEFAULT_STOP_GRACE_MS = 30_000;

/**
 * Starts a client run: creates the run folder, binds the endpoint, and serves the schedule to the
 * clients that connect (every rank of a torchrun job connects as its own client).
 */
export async function serve(config: ResolvedConfig, options: ServeOptions = {}): Promise<ServeHandle> {
  const runDir = createRunDir(config);
  const run = new ClientRun(runDir, config, options);
  await run.start();
  return run.handle();
}

export interface RunScriptOptions extends ServeOptions {
  /** Extra environment for the command (TRQAT_* are set by trqat). */
  env?: Record<string, string>;
  cwd?: string;
  /** 'inherit' (default: the script writes to this terminal) or 'pipe' (collected in the result). */
  stdio?: 'inherit' | 'pipe';
  /** Receives the child once started, e.g. to forward signals. */
  onSpawn?: (child: { pid: number | undefined; kill(signal?: NodeJS.Signals): boolean }) => void;
}

export interface RunScriptResult {
  runDir: string;
  /** How the command ended; code 127 with signal null when it could not be started. */
  exit: ScriptExit;
  /** The exit status `trqat run` ends with: the command's, 128 + signal number when it was killed. */
  exitCode: number;
  /** The run's summary, or null when it failed (then `error` says why). */
  summary: ServeSummary | null;
  error: Error | null;
  stdout: string;
  stderr: string;
}

/**
 * `trqat run -- <command>`: serves a client run, starts `command` with TRQAT_ENDPOINT and
 * TRQAT_RUN_DIR in its environment, and ends the run when it exits.
 */
export async function runScript(config: ResolvedConfig, command: readonly string[], options: RunScriptOptions = {}): Promise<RunScriptResult> {
  if (command.length === 0) throw new TrqatError('trqat run needs a command to start, e.g. trqat run -- python train.py', 2);
  const handle = await serve(config, { ...options, command: [...command] });
  const pipe = options.stdio === 'pipe';
  const child = execa(command[0]!, command.slice(1), {
    cwd: options.cwd,
    env: {
      ...scriptEnv(),
      ...options.env,
      TRQAT_ENDPOINT: handle.endpoint,
      TRQAT_RUN_DIR: handle.runDir,
      TRQAT_HEARTBEAT_MS: String(config.worker.heartbeat_interval_ms),
      TRQAT_CONTROLLER_TIMEOUT_MS: String(Math.max(config.worker.heartbeat_timeout_ms, 10 * config.worker.heartbeat_interval_ms)),
    },
    stdin: pipe ? 'ignore' : 'inherit',
    stdout: pipe ? 'pipe' : 'inherit',
    stderr: pipe ? 'pipe' : 'inherit',
    reject: false,
    buffer: pipe,
  });
  options.onSpawn?.({ pid: child.pid, kill: (signal) => child.kill(signal) });
  // A client that went silent fails the run: stop the script too instead of waiting on it forever.
  const failed = handle.done.then(
    () => null,
    (error: Error) => error,
  );
  let failedFirst = false;
  void failed.then((error) => {
    if (error && child.exitCode === null) {
      failedFirst = true;
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 5000).unref();
    }
  });
  const result = await child;
  const notStarted = result.exitCode === undefined && !result.signal;
  const exit: ScriptExit = notStarted ? { code: 127, signal: null } : { code: result.exitCode ?? null, signal: result.signal ?? null };
  if (notStarted) {
    options.onEvent?.({ type: 'warning', message: `cannot start ${command[0]}: ${result.shortMessage ?? result.message}` });
  }
  handle.processExited(exit);
  const error = await failed;
  const summary = error ? null : await handle.done;
  const signalNumber = exit.signal ? (osConstants.signals as Record<string, number>)[exit.signal] ?? 0 : 0;
  let exitCode = exit.signal ? 128 + signalNumber : exit.code ?? 1;
  // The run failed first (a client went silent) and the script was stopped for it: never report success.
  if (error && failedFirst && exitCode === 0) exitCode = 1;
  return {
    runDir: handle.runDir,
    exit,
    exitCode,
    summary,
    error,
    stdout: pipe ? String(result.stdout ?? '') : '',
    stderr: pipe ? String(result.stderr ?? '') : '',
  };
}


/** Describes how a process ended, for messages. */
export function describeExit(exit: ScriptExit): string {
  if (exit.signal) return `was killed by ${exit.signal}`;
  return `exited with code ${exit.code}`;
}

interface Pending {
  decision: StepDecision;
  counts: number[] | null;
}

class ClientRun implements ClientHubHandler {
  private config: ResolvedConfig;
  private hub: ClientHub | null = null;
  private readonly metrics: MetricsLog;
  private info: ClientRunInfo;
  private controller: TrController | null = null;
  private plan: RunPlan | null = null;
  private layers: WorkerBody<'ready'>['layers'] = [];
  private startStep = 0;
  private nextStep = 0;
  private readonly decisions = new Map<number, ControllerBodies['lr']>();
  private pending: Pending | null = null;
  private worldSize: number | null = null;
  private readonly closedRanks = new Set<number>();
  private bestTop1: number | null = null;
  private lastEval: EvalRecord | null = null;
  private evalSid: { step: number; sid: string } | null = null;
  /** Evaluations reported while the last step's record waits for its loss: written right after it. */
  private heldEvals: EvalRecord[] = [];
  private clientError: string | null = null;
  private stopped = false;
  /** A decision with `stop: true` has gone out: later steps are refused (lagging ranks get the cached one). */
  private stopSent = false;
  private stopTimer: NodeJS.Timeout | null = null;
  private finished = false;
  private readonly startedAt = Date.now();
  private readonly rate = new StepRate();
  private resolveDone!: (summary: ServeSummary) => void;
  private rejectDone!: (error: Error) => void;
  readonly done: Promise<ServeSummary>;

  constructor(
    private readonly runDir: string,
    config: ResolvedConfig,
    private readonly options: ServeOptions,
  ) {
    this.config = config;
    const now = new Date().toISOString();
    this.info = { status: 'running', mode: 'client', step: 0, checkpoint_step: 0, plan: null, started: now, updated: now, clients: [] };
    if (options.command) this.info.command = options.command;
    writeJsonAtomic(join(runDir, 'config.json'), config);
    this.metrics = new MetricsLog(join(runDir, 'metrics.jsonl'));
    this.done = new Promise<ServeSummary>((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
    // Callers that only await processExited/stop must not see an unhandled rejection.
    this.done.catch(() => undefined);
  }

  async start(): Promise<void> {
    this.saveInfo();
    try {
      this.hub = await ClientHub.bind(this.config, this);
    } catch (error) {
      this.fail((error as Error).message);
      throw error;
    }
    const signal = this.options.signal;
    if (signal) {
      if (signal.aborted) this.stop();
      else signal.addEventListener('abort', () => this.stop(), { once: true });
    }
    this.emit({ type: 'listening', endpoint: this.hub.endpoint, runDir: this.runDir });
  }

  handle(): ServeHandle {
    return {
      endpoint: this.hub!.endpoint,
      runDir: this.runDir,
      done: this.done,
      stop: () => this.stop(),
      processExited: (exit) => this.processExited(exit),
    };
  }

  private emit(event: ServeEvent): void {
    this.options.onEvent?.(event);
  }

  warn(message: string): void {
    this.emit({ type: 'warning', message });
  }

  // --- sessions ------------------------------------------------------------------------------
  hello(hello: WorkerBody<'hello'>): string | null {
    if (this.finished) return 'this run has ended';
    if (this.stopped) return 'this run is stopping';
    if (this.worldSize !== null && hello.world_size !== this.worldSize) {
      return `world size ${hello.world_size} does not match the run's world size ${this.worldSize} (from the first client)`;
    }
    if (hello.rank >= hello.world_size) return `rank ${hello.rank} is not below the world size ${hello.world_size}`;
    const twin = this.hub?.all().find((s) => s.hello.rank === hello.rank && (s.state === 'welcomed' || s.state === 'ready'));
    if (twin) return `rank ${hello.rank} is already connected (pid ${twin.hello.pid} on ${twin.hello.hostname}); every rank connects once`;
    if (this.closedRanks.has(hello.rank)) return `rank ${hello.rank} has already said bye to this run`;
    this.worldSize = hello.world_size;
    return null;
  }

  welcomed(session: ClientSession): void {
    const client = clientInfo(session);
    this.info.clients.push(client);
    if (!this.info.worker) this.info.worker = session.hello;
    this.saveInfo();
    this.emit({ type: 'client', client });
  }

  ready(_session: ClientSession, body: WorkerBody<'ready'>): Outcome<ControllerBodies['plan']> {
    if (this.finished) return { refuse: 'this run has ended' };
    if (this.plan) return this.joinPlan(body);
    if (body.layers.length === 0) return { refuse: 'the model has no quantized layers: quantize it first (trqat.adapt.quantize)' };
    const configured = this.config.train.steps;
    const total = configured ?? body.total_steps ?? null;
    if (total === null) {
      return {
        refuse:
          'the run length is unknown: set train.steps in the config (e.g. --set train.steps=N), or pass total_steps=N ' +
          '(or steps_per_epoch=N, for train.epochs epochs) to trqat.client.Client',
      };
    }
    if (configured !== null && body.total_steps != null && body.total_steps !== configured) {
      this.warn(`the client asked for ${body.total_steps} steps; the config's train.steps = ${configured} wins`);
    }
    const start = body.start_step;
    if (start >= total) return { refuse: `the client continues at step ${start}, but the run has only ${total} steps` };
    const state = body.controller_state ?? null;
    if (state && state.last_step !== start - 1) {
      return { refuse: `controller_state is at step ${state.last_step}, but the client continues at step ${start} (expected ${start - 1})` };
    }
    this.adoptBits(body.layers);
    const controller = new TrController(this.config, total, body.layers.map((layer) => layer.numel));
    if (state) {
      try {
        controller.loadStateDict(state as unknown as ControllerState);
      } catch (error) {
        return { refuse: `cannot continue from the client's controller_state: ${(error as Error).message}` };
      }
    }
    else if (start > 0) {
      controller.loadStateDict({ ...controller.stateDict(), last_step: start - 1 });
      this.warn(`the client continues at step ${start} without controller state: K restarts at 0 and U at U(0) (save client.state_dict() in your checkpoints)`);
    }
    this.controller = controller;
    this.layers = body.layers;
    this.startStep = this.nextStep = start;
    this.plan = { total_steps: total, steps_per_epoch: body.steps_per_epoch, eval_every: 0, checkpoint_every: 0, controller: controllerSettings(this.config, total) };
    this.info = { ...this.info, plan: this.plan, device: body.device, layers: body.layers, step: start };
    this.saveInfo();
    this.emit({
      type: 'started',
      runDir: this.runDir,
      endpoint: this.hub!.endpoint,
      plan: this.plan,
      logEvery: this.config.train.log_every,
      startStep: start,
      device: body.device,
      layers: body.layers.length,
      quantizedWeights: controller.quantizedWeights,
    });
    return { ok: this.planBody() };
  }

  /** A further rank's ready must describe the same model and start. */
  private joinPlan(body: WorkerBody<'ready'>): Outcome<ControllerBodies['plan']> {
    const sizes = (layers: WorkerBody<'ready'>['layers']) => layers.map((l) => l.numel).join(',');
    if (sizes(body.layers) !== sizes(this.layers)) {
      return { refuse: `this client's quantized layers (${body.layers.length}) differ from the first client's (${this.layers.length}): every rank must train the same model` };
    }
    if (body.start_step !== this.startStep) {
      return { refuse: `this client starts at step ${body.start_step}, the run started at step ${this.startStep}: every rank must start at the same step` };
    }
    return { ok: this.planBody() };
  }

  private planBody(): ControllerBodies['plan'] {
    return { total_steps: this.plan!.total_steps, steps_per_epoch: this.plan!.steps_per_epoch, start_step: this.startStep };
  }

  /**
   * R(0) = lambda * sqrt(b_w) uses the weight bits, which the script chose (trqat.adapt.quantize):
   * when every layer has the same bits and the config's differ, the config follows the model (R(0)
   * is recomputed unless tr.r0 was set to something else), and config.json records it. Mixed bits:
   * R(0) from the layers (r0ForLayers).
   */
  private adoptBits(layers: WorkerBody<'ready'>['layers']): void {
    const bits = [...new Set(layers.map((l) => l.weight_bits))];
    const acts = [...new Set(layers.map((l) => l.act_bits))];
    const quant = this.config.quant;
    if (bits.length !== 1) {
      const r0 = r0ForLayers(this.config, layers); // the size-weighted mean of lambda * sqrt(b_l), unless tr.r0 was set
      this.config = { ...this.config, tr: { ...this.config.tr, r0 } };
      writeJsonAtomic(join(this.runDir, 'config.json'), this.config);
      this.warn(`the model's layers have mixed weight bits (${bits.join(', ')}): R(0) = ${r0.toExponential(3)}, the size-weighted mean of lambda * sqrt(bits) unless tr.r0 is set`);
      return;
    }
    const weightBits = bits[0]!;
    const actBits = acts.length === 1 ? acts[0]! : quant.act_bits;
    if (weightBits === quant.weight_bits && actBits === quant.act_bits) return;
    const derived = Math.abs(this.config.tr.r0 - this.config.tr.lambda * Math.sqrt(quant.weight_bits)) <= 1e-12 * this.config.tr.r0;
    const r0 = derived ? this.config.tr.lambda * Math.sqrt(weightBits) : this.config.tr.r0;
    this.config = {
      ...this.config,
      quant: { ...quant, weight_bits: weightBits, act_bits: actBits as typeof quant.act_bits },
      tr: { ...this.config.tr, r0 },
    };
    writeJsonAtomic(join(this.runDir, 'config.json'), this.config);
    if (weightBits !== quant.weight_bits) {
      this.warn(`the model has ${weightBits}-bit weights (the config said ${quant.weight_bits})${derived ? `: R(0) = lambda * sqrt(${weightBits}) = ${r0.toExponential(3)}` : ''}`);
    }
  }

  step(_session: ClientSession, body: WorkerBody<'step'>): Outcome<ControllerBodies['lr']> {
    if (this.finished) return { refuse: 'this run has ended' };
    const t = body.step;
    const plan = this.plan!;
    if (t < this.nextStep) {
      const cached = this.decisions.get(t);
      return cached ? { ok: cached } : { refuse: `step ${t} was decided long ago (the run is at step ${this.nextStep}); ranks must run in lockstep` };
    }
    if (t > this.nextStep) return { refuse: `step ${t} skips step ${this.nextStep}: steps run one after another` };
    if (t >= plan.total_steps) return { refuse: `step ${t} is past the end of the run (${plan.total_steps} steps)` };
    if (this.stopSent) return { refuse: `the controller stopped the run at step ${t}` };
    if (body.counts !== null && body.counts.length !== this.layers.length) {
      return { refuse: `step ${t}: ${body.counts.length} per-layer counts for ${this.layers.length} quantized layers` };
    }
    if (body.counts?.some((count, i) => count > this.layers[i]!.numel)) {
      return { refuse: `step ${t}: a layer reports more transitions than it has weights` };
    }
    if (this.pending) this.record(this.pending, body);
    const decision = this.controller!.step(t, body.counts);
    const stop = t + 1 >= plan.total_steps || this.stopped;
    if (this.stopped) this.stopSent = true;
    const lr: ControllerBodies['lr'] = {
      step: t,
      lr_quant: decision.lr_quant,
      lr_other: decision.lr_other,
      stop,
      state: this.controller!.stateDict(),
    };
    this.decisions.set(t, lr);
    this.decisions.delete(t - DECISION_WINDOW);
    this.pending = { decision, counts: body.counts };
    this.nextStep = t + 1;
    return { ok: lr };
  }

  evaluated(session: ClientSession, body: WorkerBody<'evaluated'>): void {
    if (this.finished) return;
    const step = this.nextStep;
    // Ranks that all report the same evaluation: the first one per step is logged.
    if (this.evalSid && this.evalSid.step === step && this.evalSid.sid !== session.sid) return;
    this.evalSid = { step, sid: session.sid };
    const record: EvalRecord = {
      type: 'eval',
      step,
      epoch: step / this.plan!.steps_per_epoch,
      top1: body.top1,
      loss: body.loss,
      samples: body.samples,
      seconds: body.seconds,
      tracking_error: this.trackingError(),
      time: Date.now() / 1000,
    };
    this.lastEval = record;
    this.bestTop1 = Math.max(this.bestTop1 ?? -Infinity, record.top1);
    // The log keeps the managed runs' order: step t-1's line, then the evaluation after step t-1.
    if (this.pending) this.heldEvals.push(record);
    else this.writeEval(record);
  }

  private writeEval(record: EvalRecord): void {
    this.metrics.write(record);
    this.metrics.flush();
    this.emit({ type: 'eval', record });
    const limit = this.config.tr.warn_tracking_error;
    if (record.tracking_error !== null && record.tracking_error > limit) {
      this.warn(
        `K is far from its target R (tracking error ${record.tracking_error.toFixed(2)} > ${limit}): U reacts too slowly for this run length; ` +
          'raise tr.talr.eta, lower tr.momentum, or set tr.auto=true',
      );
    }
  }

  private trackingError(): number | null {
    return this.config.mode === 'tr' && this.controller ? this.controller.trackingError : null;
  }

  bye(session: ClientSession, body: WorkerBody<'bye'>): void {
    this.closedRanks.add(session.hello.rank);
    if (this.pending && body.samples != null) this.record(this.pending, { loss: body.loss ?? null, correct: body.correct ?? null, samples: body.samples });
    // Ctrl-C in the script (KeyboardInterrupt) is a stop, not a failure.
    if (body.error && !body.error.startsWith('KeyboardInterrupt')) this.clientError ??= `rank ${session.hello.rank} reported: ${body.error}`;
    this.emit({ type: 'client-left', client: clientInfo(session), reason: body.error ? `error: ${body.error}` : 'bye' });
    this.checkFinished();
  }

  lost(session: ClientSession, reason: string): void {
    this.emit({ type: 'client-left', client: clientInfo(session), reason: `lost: ${reason}` });
    this.fail(`the client (rank ${session.hello.rank}, pid ${session.hello.pid}) stopped answering: ${reason}`);
  }

  // --- ending ----------------------------------------------------------------------------------
  private checkFinished(): void {
    if (this.finished || !this.hub) return;
    if (this.hub.active().length > 0) return;
    // Under `trqat run`, a script that reported an error is reported with its exit status.
    if (this.clientError && this.options.command) return;
    if (this.closedRanks.size >= (this.worldSize ?? 1)) this.finish();
  }

  stop(): void {
    if (this.finished || this.stopped) return;
    this.stopped = true;
    if (!this.hub || this.hub.active().length === 0) {
      this.finish();
      return;
    }
    this.stopTimer = setTimeout(() => this.finish(), this.options.stopGraceMs ?? DEFAULT_STOP_GRACE_MS);
    this.stopTimer.unref();
  }

  private processExited(exit: ScriptExit): void {
    this.info.exit = exit;
    if (this.finished) {
      this.saveInfo();
      return;
    }
    const interrupted = exit.signal === 'SIGINT' || exit.code === 130;
    const failed = (exit.code !== 0 || exit.signal !== null) && !interrupted;
    if (failed) {
      const at = this.plan ? ` at step ${this.nextStep} of ${this.plan.total_steps}` : ' before its first step';
      this.fail(`the training script ${describeExit(exit)}${at}${this.clientError ? ` (${this.clientError})` : ''}`);
    } else if (!this.plan) {
      this.fail('the command exited (code 0) without a trqat client connecting: nothing was recorded (add trqat.client.Client to the training loop)');
    } else {
      this.finish();
    }
  }

  private finish(): void {
    if (this.finished) return;
    if (this.clientError) {
      this.fail(`the training script failed${this.plan ? ` at step ${this.nextStep} of ${this.plan.total_steps}` : ''}: ${this.clientError}`);
      return;
    }
    this.flushPending();
    const completed = this.plan !== null && this.nextStep >= this.plan.total_steps;
    const status = completed ? 'completed' : 'stopped';
    const summary: ServeSummary = {
      run_dir: this.runDir,
      status,
      step: this.nextStep,
      total_steps: this.plan?.total_steps ?? 0,
      final_top1: this.lastEval?.top1 ?? null,
      best_top1: this.bestTop1,
      final_loss: this.lastEval?.loss ?? null,
      tracking_error: this.trackingError(),
      elapsed_s: (Date.now() - this.startedAt) / 1000,
    };
    this.end(status);
    writeJsonAtomic(join(this.runDir, 'summary.json'), summary);
    this.resolveDone(summary);
  }

  private fail(message: string): void {
    if (this.finished) return;
    this.flushPending();
    this.info.error = message;
    this.end('failed');
    this.rejectDone(new ClientRunFailure(message));
  }

  private end(status: ClientRunStatus): void {
    this.finished = true;
    if (this.stopTimer) clearTimeout(this.stopTimer);
    this.info.status = status;
    this.info.step = this.nextStep;
    this.saveInfo();
    this.metrics.close();
    void this.hub?.close();
  }

  /** The last step's record, when no client reported its loss (a crash, an exit without bye). */
  private flushPending(): void {
    if (this.pending) this.record(this.pending, { loss: null, correct: null, samples: null });
  }

  private record(pending: Pending, stats: StepStats): void {
    this.pending = null;
    const now = Date.now();
    const record = stepRecord(pending.decision, pending.counts, stats, this.plan!.steps_per_epoch, this.rate.tick(now), now);
    this.metrics.write(record);
    this.emit({ type: 'step', record, plan: this.plan! });
    const held = this.heldEvals;
    this.heldEvals = [];
    for (const evaluation of held) this.writeEval(evaluation);
  }

  private saveInfo(): void {
    this.info.updated = new Date().toISOString();
    writeJsonAtomic(join(this.runDir, 'run.json'), this.info);
  }
}

function clientInfo(session: ClientSession): ClientInfo {
  const h = session.hello;
  return {
    sid: session.sid,
    rank: h.rank,
    world_size: h.world_size,
    pid: h.pid,
    hostname: h.hostname,
    device: h.device,
    torch_version: h.torch_version,
    trqat_version: h.trqat_version,
  };
}
