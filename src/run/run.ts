import { join } from 'node:path';
import { controllerSettings, r0ForLayers, totalSteps, type ResolvedConfig } from '../config/resolve.js';
import { ConfigError, TrqatError } from '../errors.js';
import { makeCredentials, peerEnv, writeAuthFile, type Credentials } from '../bridge/auth.js';
import { describeExit, RunProcess, type ProcessExit } from '../bridge/launcher.js';
import { VersionMismatchError, type ControllerBodies, type LayerInfo, type LrBody, type ProtocolError, type WorkerBody, type WorkerMessage } from '../bridge/protocol.js';
import { SessionTable, type Outcome, type Session, type SessionHandler } from '../bridge/sessions.js';
import { TrController, type ControllerState } from '../schedules/controller.js';
import { Checkpoints, CHECKPOINT_FORMAT, type CheckpointRef, type ControllerCheckpoint } from './checkpoints.js';
import { lockRunDir, removeQuietly } from './files.js';
import type { EvalRecord, StepRecord } from './metrics.js';
import { rankInfo, RunRecord, type RunEvent, type RunKind, type RunPlan, type RunSummary } from './record.js';
import { StepLoop, StepMismatch, type Directives } from './step-loop.js';

export interface RunOptions {
  onEvent?: (event: RunEvent) => void;
  /** Aborting stops the run cleanly: the next step is the last, managed runs write a checkpoint. */
  signal?: AbortSignal;
  /** Client runs: after a stop, how long scripts get to say bye before the run is closed anyway. */
  stopGraceMs?: number;
}

/** A run in progress: managed (`trqat train`) or client (`trqat run`, `trqat serve`) alike. */
export interface RunHandle {
  runDir: string;
  /** The endpoint sessions connect to (TRQAT_ENDPOINT). */
  endpoint: string;
  /** The environment a process of this run needs to join it (endpoint and credentials). */
  peerEnv: Record<string, string>;
  /** Resolves when the run ends (completed or stopped); rejects when it failed. */
  done: Promise<RunSummary>;
  /** Stops cleanly, like aborting `signal`. */
  stop(): void;
  /** Stops at once (a second Ctrl-C): the log is written, run.json says stopped, the processes are killed. */
  stopNow(reason: string): void;
}

/** The run failed: a rank died, hung or reported an error; the message holds what is known (stderr tail). */
export class RunFailure extends TrqatError {}

/**
 * With several ranks, one rank's death breaks the others' collectives, and their errors (or exits)
 * can reach the controller before the dead rank's exit. A failure report of one rank waits this long
 * for another rank's abnormal exit, which is then reported as the cause.
 */
export const CAUSE_GRACE_MS = 1500;

/** After a clean end, how long the processes of the run get to exit by themselves. */
const EXIT_GRACE_MS = 10_000;
const DEFAULT_STOP_GRACE_MS = 30_000;

export interface RunSpec {
  kind: RunKind;
  runDir: string;
  config: ResolvedConfig;
  /** Managed runs resumed from a checkpoint. */
  checkpoint: CheckpointRef | null;
  /** trqat run: the user's command, for run.json. */
  command?: string[];
  /** A resume changed settings (worker.*): config.json is rewritten. */
  configChanged?: boolean;
  /** Starts the run's processes here (managed ranks with worker.launch=local, or trqat run's command); managed ranks again after a crash. */
  launchRanks?: (run: Run) => Promise<void>;
}

/**
 * How long a session waits for a silent controller before it gives up: within the heartbeat timeout
 * of the run (5 s by default), so that no process outlives a killed controller by more than that.
 */
export function controllerTimeoutMs(config: ResolvedConfig): number {
  const { heartbeat_interval_ms: interval, heartbeat_timeout_ms: timeout } = config.worker;
  return Math.max(2 * interval, timeout - interval);
}

/**
 * One run: its sessions (every rank of trqat's workers or of the user's script), its one step
 * loop, its record. A managed session also gets directives (evaluate, checkpoint, stop) with its
 * LRs; a client session may ignore them. Processes the run started are supervised here.
 */
export class Run implements SessionHandler {
  readonly done: Promise<RunSummary>;
  private config: ResolvedConfig;
  private readonly record: RunRecord;
  private readonly credentials: Credentials;
  private readonly checkpoints: Checkpoints;
  private readonly unlock: () => void;
  private table: SessionTable | null = null;
  private readonly processes: RunProcess[] = [];
  private controller: TrController | null = null;
  private plan: RunPlan | null = null;
  private loop: StepLoop | null = null;
  private layers: LayerInfo[] = [];
  /** The ready the plan was made from: every further rank must ask for the same. */
  private firstReady: { rank: number; body: WorkerBody<'ready'> } | null = null;
  private startStep = 0;
  private worldSize: number | null = null;
  /** What each rank is doing, for error messages ("training step 37"). */
  private readonly activity = new Map<number, string>();
  private readonly closedRanks = new Set<number>();
  private pendingCheckpoint: { step: number; staging: string; commit: (state: ControllerCheckpoint, top1: number | null) => CheckpointRef; state: ControllerState; saved: boolean } | null = null;
  private lastEvalStep = -1;
  /** The checkpoint the ranks restore from: the resumed one, then the latest after an automatic restart. */
  private resumeFrom: CheckpointRef | null;
  /** When the run restarted its ranks after a crash (worker.max_restarts within worker.restart_window_ms). */
  private readonly restarts: number[] = [];
  private clientError: string | null = null;
  /** A rank's failure report waiting CAUSE_GRACE_MS for another rank's exit (blame). */
  private suspect: { rank: number; kind: 'error' | 'exit'; timer: NodeJS.Timeout } | null = null;
  /** trqat run: the exit recorded in run.json as the cause (the first copy that failed by itself). */
  private causeExit: ProcessExit | null = null;
  private stopRequested = false;
  private ended = false;
  private readonly timers: NodeJS.Timeout[] = [];
  private progressTimer: NodeJS.Timeout | null = null;
  private resolveDone!: (summary: RunSummary) => void;
  private rejectDone!: (error: Error) => void;

  private constructor(
    private readonly spec: RunSpec,
    private readonly options: RunOptions,
  ) {
    this.config = spec.config;
    this.resumeFrom = spec.checkpoint;
    this.credentials = makeCredentials(spec.config.bridge.endpoint, spec.config.bridge.curve);
    this.checkpoints = new Checkpoints(spec.runDir, spec.config.train.keep_checkpoints, spec.config.train.keep_best);
    // A new run's folder that cannot even be set up (a full disk) is removed: it holds nothing yet.
    const fresh = spec.checkpoint === null;
    try {
      this.unlock = lockRunDir(spec.runDir);
    } catch (error) {
      if (fresh) removeQuietly(spec.runDir);
      throw error;
    }
    let record: RunRecord | null = null;
    try {
      record = new RunRecord(spec.runDir, spec.config, spec.kind, spec.checkpoint?.step ?? null, (event) => this.emit(event));
      if (spec.configChanged) record.updateConfig(spec.config);
      if (spec.command) record.set({ command: spec.command });
    } catch (error) {
      if (record) this.attempt(() => record!.end('failed', null, (error as Error).message));
      this.unlock();
      if (fresh) removeQuietly(spec.runDir);
      throw error;
    }
    this.record = record;
    this.done = new Promise<RunSummary>((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
    this.done.catch(() => undefined); // callers that only stop() must not see an unhandled rejection
  }

  /** Creates the run's record, binds its endpoint and starts accepting sessions. */
  static async open(spec: RunSpec, options: RunOptions): Promise<Run> {
    const run = new Run(spec, options);
    try {
      run.table = await SessionTable.bind(spec.config.bridge.endpoint, run.credentials, spec.config.worker.heartbeat_timeout_ms, run);
    } catch (error) {
      run.fail(error as Error);
      throw error;
    }
    const external = spec.kind === 'client' || spec.config.worker.launch === 'external';
    let authFile: string | null = null;
    try {
      if (external) authFile = writeAuthFile(spec.runDir, run.credentials, run.endpoint);
    } catch (error) {
      run.fail(error as Error);
      throw error;
    }
    const signal = options.signal;
    if (signal?.aborted) run.stop();
    else signal?.addEventListener('abort', () => run.stop(), { once: true });
    run.emit({ type: 'listening', endpoint: run.endpoint, runDir: spec.runDir, authFile });
    if (spec.launchRanks) await run.launch();
    else if (spec.kind === 'managed') run.watchStartup();
    return run;
  }

  get endpoint(): string {
    return this.table!.endpoint;
  }

  handle(): RunHandle {
    return {
      runDir: this.spec.runDir,
      endpoint: this.endpoint,
      peerEnv: this.peerEnv(),
      done: this.done,
      stop: () => this.stop(),
      stopNow: (reason) => this.stopNow(reason),
    };
  }

  /** TRQAT_ENDPOINT and the credentials, for processes this run starts. */
  peerEnv(): Record<string, string> {
    return {
      ...peerEnv(this.credentials, this.endpoint),
      TRQAT_RUN_DIR: this.spec.runDir,
      TRQAT_HEARTBEAT_MS: String(this.config.worker.heartbeat_interval_ms),
      TRQAT_CONTROLLER_TIMEOUT_MS: String(controllerTimeoutMs(this.config)),
      // A process this controller starts itself exits as soon as the controller is gone (its parent changes).
      TRQAT_CONTROLLER_PID: String(process.pid),
    };
  }

  /** A client run waits for its script as long as it takes; trqat's own workers must be ready in time. */
  private watchStartup(): void {
    const limit = this.config.worker.startup_timeout_ms;
    this.later(() => {
      if (this.ended || (this.plan && this.readyRanks() >= this.worldSize!)) return;
      this.fail(new RunFailure(`not every rank was ready within worker.startup_timeout_ms (${limit} ms): ${this.readyRanks()} of ${this.worldSize ?? '?'} ready`));
    }, limit);
  }

  private async launch(): Promise<void> {
    if (this.spec.kind === 'managed') this.watchStartup();
    await this.spec.launchRanks!(this);
  }

  /** Supervises a process this run started: its exit before its session's bye fails a managed run. */
  supervise(process: RunProcess): void {
    this.processes.push(process);
    void process.exited.then((exit) => this.processExited(process, exit));
    // Its log cannot be written (a full disk): the run stops rather than go on without a record of it.
    void process.logFailed.then((error) => this.fail(error));
  }

  stop(): void {
    if (this.ended || this.stopRequested) return;
    this.stopRequested = true;
    if (!this.table || this.table.active().length === 0) {
      if (this.spec.kind === 'client' || !this.plan) this.finish();
      return;
    }
    if (this.spec.kind === 'client') this.later(() => this.finish(), this.options.stopGraceMs ?? DEFAULT_STOP_GRACE_MS);
  }

  stopNow(reason: string): void {
    if (this.ended) return;
    this.ended = true;
    this.attempt(() => this.loop?.flush());
    this.attempt(() => this.record.end('stopped', this.controller?.trackingError ?? null, reason));
    this.table?.abort(reason);
    for (const process of this.processes) process.stop('SIGKILL');
    this.unlock();
  }

  // --- sessions --------------------------------------------------------------------------------
  hello(hello: WorkerBody<'hello'>): string | null {
    const role = this.spec.kind === 'managed' ? 'worker' : 'client';
    if (hello.role !== role) {
      return role === 'worker'
        ? 'this endpoint runs a managed training (trqat train) with its own workers; connect your script to "trqat run" or "trqat serve"'
        : 'this controller (trqat run / trqat serve) serves client sessions (trqat.client.Client); managed workers are started by "trqat train"';
    }
    if (this.ended) return 'this run has ended';
    if (this.stopRequested) return 'this run is stopping';
    const expected = this.worldSize ?? (this.spec.kind === 'managed' && this.config.worker.launch === 'local' ? this.config.worker.nproc_per_node : null);
    if (expected !== null && hello.world_size !== expected) {
      return `world size ${hello.world_size} does not match the run's world size ${expected}`;
    }
    if (hello.rank >= hello.world_size) return `rank ${hello.rank} is not below the world size ${hello.world_size}`;
    const twin = this.table?.active().find((s) => s.rank === hello.rank);
    if (twin) return `rank ${hello.rank} is already connected (pid ${twin.hello.pid} on ${twin.hello.hostname}); every rank connects once`;
    if (this.closedRanks.has(hello.rank)) return `rank ${hello.rank} has already said bye to this run`;
    this.worldSize = hello.world_size;
    return null;
  }

  welcome(session: Session): ControllerBodies['welcome'] {
    const info = rankInfo(session.hello);
    this.guard(() => this.record.addRank(info));
    this.activity.set(session.rank, 'building the model and loading data');
    this.emit({ type: 'rank', rank: info, worldSize: session.hello.world_size });
    return { config: this.config, resume: this.resumeFrom?.path ?? null };
  }

  ready(session: Session, body: WorkerBody<'ready'>): Outcome<ControllerBodies['plan']> {
    if (this.ended) return { refuse: 'this run has ended' };
    const outcome = this.guard(() => (this.plan ? this.join(session.rank, body) : this.makePlan(session.rank, body))) ?? { refuse: 'this run has failed' };
    if ('ok' in outcome) this.activity.set(session.rank, `waiting for the other ranks before step ${this.startStep}`);
    return outcome;
  }

  message(session: Session, message: WorkerMessage): void {
    if (this.ended) return;
    try {
      this.dispatch(session, message);
    } catch (error) {
      this.fail(error instanceof StepMismatch ? new RunFailure(`${error.message}: data-parallel ranks must hold identical weights (wrap the model in DistributedDataParallel, initialise it identically on every rank)`) : (error as Error));
    }
  }

  lost(session: Session, reason: string): void {
    if (this.ended) return;
    const process = this.processOf(session.rank);
    if (process?.exit) return; // it has exited, not hung: its exit is the report
    this.emit({ type: 'rank-left', rank: rankInfo(session.hello), reason: `lost: ${reason}` });
    process?.stop('SIGKILL'); // hung: it would not answer SIGTERM any sooner
    this.crash(new RunFailure(this.withStderr(`rank ${session.rank} (pid ${session.hello.pid} on ${session.hello.hostname}) stopped answering (${reason}) while ${this.doing(session.rank)}`, process)));
  }

  refused(error: ProtocolError): void {
    // Our own worker with another protocol version cannot take part: say so instead of waiting for it.
    // (A user's script raises the refusal itself and exits, which ends a client run.)
    if (this.spec.kind === 'managed' && error instanceof VersionMismatchError && this.processes.some((p) => p.pid === error.pid)) {
      this.fail(new RunFailure(`the worker was refused at the handshake: ${error.message}`));
    }
  }

  warn(message: string): void {
    this.emit({ type: 'warning', message });
  }

  // --- messages of ready sessions -----------------------------------------------------------
  private dispatch(session: Session, message: WorkerMessage): void {
    const loop = this.loop;
    switch (message.type) {
      case 'step': {
        const body = message.body as WorkerBody<'step'>;
        this.activity.set(session.rank, `training step ${body.step}`);
        const refusal = loop!.report(session.rank, body);
        if (refusal !== null) this.table!.send(session, 'error', { message: refusal });
        return;
      }
      case 'evaluated': {
        const body = message.body as WorkerBody<'evaluated'>;
        loop!.stats(session.rank, body.last);
        this.onEvaluated(body);
        const step = loop!.next;
        this.activity.set(session.rank, this.pendingCheckpoint ? `saving the checkpoint of step ${step}` : `training step ${step}`);
        return;
      }
      case 'saved': {
        const body = message.body as WorkerBody<'saved'>;
        loop!.stats(session.rank, body.last);
        if (this.pendingCheckpoint) this.pendingCheckpoint.saved = true;
        this.maybeCommit();
        this.activity.set(session.rank, `training step ${loop!.next}`);
        return;
      }
      case 'bye': {
        const body = message.body as WorkerBody<'bye'>;
        loop?.stats(session.rank, body.last);
        this.closedRanks.add(session.rank);
        this.activity.set(session.rank, 'exiting');
        // Ctrl-C in the script (KeyboardInterrupt) is a stop, not a failure.
        if (body.error && !body.error.startsWith('KeyboardInterrupt')) this.clientError ??= `rank ${session.rank} reported: ${body.error}`;
        this.emit({ type: 'rank-left', rank: rankInfo(session.hello), reason: body.error ? `error: ${body.error}` : 'bye' });
        loop?.leave(session.rank);
        this.checkFinished();
        return;
      }
      case 'progress': {
        const body = message.body as WorkerBody<'progress'>;
        this.emit({ type: 'progress', ...body });
        if (this.plan) this.armProgress(); // a long evaluation that reports is making progress
        return;
      }
      case 'error': {
        const body = message.body as WorkerBody<'error'>;
        if (this.spec.kind === 'client') {
          this.warn(`rank ${session.rank} (pid ${session.hello.pid}) reported an error: ${body.message}`);
          return;
        }
        if (body.kind === 'config') {
          this.fail(new ConfigError(body.message));
          return;
        }
        if (body.kind === 'checkpoint' && this.resumeFrom && !this.plan) {
          this.fallBack(this.resumeFrom, body.message);
          return;
        }
        // The traceback says what the stderr tail would, without the repetition.
        const text = `rank ${session.rank} reported an error while ${this.doing(session.rank)}: ${body.message}`;
        const failure = new RunFailure(body.traceback ? `${text}\n${body.traceback.trimEnd()}` : this.withStderr(text, this.processOf(session.rank)));
        this.blame(session.rank, 'error', false, () => this.fail(failure));
        return;
      }
      default:
        this.table!.send(session, 'error', { message: `"${message.type}" is not expected here` });
    }
  }

  private onEvaluated(body: WorkerBody<'evaluated'>): void {
    const step = this.loop!.next;
    if (step === this.lastEvalStep) return; // every rank of a script may report the same evaluation: the first is logged
    this.lastEvalStep = step;
    const record: EvalRecord = {
      type: 'eval',
      step,
      epoch: step / this.plan!.steps_per_epoch,
      top1: body.top1,
      loss: body.loss,
      samples: body.samples,
      seconds: body.seconds,
      tracking_error: this.config.mode === 'tr' ? this.controller!.trackingError : null,
      time: Date.now() / 1000,
    };
    this.record.eval(record);
    this.armProgress();
  }

  // --- the plan ------------------------------------------------------------------------------
  private makePlan(rank: number, body: WorkerBody<'ready'>): Outcome<ControllerBodies['plan']> {
    const client = this.spec.kind === 'client';
    if (client && body.layers.length === 0) return { refuse: 'the model has no quantized layers: quantize it first (trqat.quantize)' };
    const configured = this.config.train.steps;
    const total = client ? (configured ?? body.total_steps ?? null) : totalSteps(this.config, body.steps_per_epoch);
    if (total === null) {
      return {
        refuse:
          'the run length is unknown: set train.steps in the config (e.g. --set train.steps=N), or pass total_steps=N ' +
          '(or steps_per_epoch=N, for train.epochs epochs) to trqat.client.Client',
      };
    }
    if (client && configured !== null && body.total_steps != null && body.total_steps !== configured) {
      this.warn(`the client asked for ${body.total_steps} steps; the config's train.steps = ${configured} wins`);
    }
    const start = body.start_step;
    if (start >= total) return { refuse: `the run continues at step ${start}, but it has only ${total} steps` };
    if (client) this.adoptBits(body.layers);
    this.adoptR0(body.layers);
    const controller = new TrController(this.config, total, body.layers.map((layer) => layer.numel), body.steps_per_epoch);
    const restored = this.restore(controller, body, start);
    if (restored !== null) return { refuse: restored };
    const evalEvery = client ? 0 : (this.config.train.eval_every ?? body.steps_per_epoch);
    this.plan = {
      total_steps: total,
      steps_per_epoch: body.steps_per_epoch,
      eval_every: evalEvery,
      checkpoint_every: client ? 0 : (this.config.train.checkpoint_every ?? evalEvery),
      world_size: this.worldSize!,
      controller: controllerSettings(this.config, total),
    };
    this.controller = controller;
    this.firstReady = { rank, body };
    this.layers = body.layers;
    this.startStep = start;
    this.loop = new StepLoop(controller, body.layers, total, body.steps_per_epoch, this.worldSize!, start, {
      directives: (t) => this.directives(t),
      answer: (ranks, lr) => this.answer(ranks, lr),
      record: (record) => this.onRecord(record),
      warn: (message) => this.warn(message),
    });
    this.record.start(this.plan, body, start, this.endpoint, controller.quantizedWeights);
    this.armProgress();
    return { ok: this.planBody() };
  }

  /** Continues the schedules: from the checkpoint (managed) or the client's saved state. Returns a refusal. */
  private restore(controller: TrController, body: WorkerBody<'ready'>, start: number): string | null {
    const checkpoint = this.resumeFrom;
    if (checkpoint) {
      const saved = Checkpoints.readController(checkpoint);
      if (saved.step !== start) throw new TrqatError(`checkpoint ${checkpoint.path} is inconsistent: controller.json is at step ${saved.step}, worker.pt at step ${start}`);
      if (saved.total_steps !== controller.totalSteps) {
        throw new TrqatError(`checkpoint ${checkpoint.path} belongs to a ${saved.total_steps}-step plan, but the config now gives ${controller.totalSteps} steps`);
      }
      controller.loadStateDict(saved.controller);
      this.record.bestTop1 = saved.best_top1;
      // An automatic restart keeps this process's clock; a resume continues the earlier ones'.
      if (this.restarts.length === 0) this.record.elapsedBefore = saved.elapsed_s;
      return null;
    }
    const state = body.controller_state ?? null;
    if (state) {
      if (state.last_step !== start - 1) return `controller_state is at step ${state.last_step}, but the client continues at step ${start} (expected ${start - 1})`;
      try {
        controller.loadStateDict(state as unknown as ControllerState);
      } catch (error) {
        return `cannot continue from the client's controller_state: ${(error as Error).message}`;
      }
    } else if (start > 0) {
      controller.loadStateDict({ ...controller.stateDict(), last_step: start - 1 });
      this.warn(`the client continues at step ${start} without controller state: K restarts at 0 and U at U(0) (save client.state_dict() in your checkpoints)`);
    }
    return null;
  }

  /** A further rank's ready must describe the same model and start. */
  private join(rank: number, body: WorkerBody<'ready'>): Outcome<ControllerBodies['plan']> {
    const sizes = (layers: readonly LayerInfo[]) => layers.map((l) => l.numel).join(',');
    if (sizes(body.layers) !== sizes(this.layers)) {
      return { refuse: `this rank's quantized layers (${body.layers.length}) differ from rank ${this.firstRank()}'s (${this.layers.length}): every rank must train the same model` };
    }
    if (body.start_step !== this.startStep) {
      return { refuse: `this rank starts at step ${body.start_step}, the run started at step ${this.startStep}: every rank must start at the same step` };
    }
    const first = this.firstReady!;
    for (const key of ['total_steps', 'steps_per_epoch'] as const) {
      const [mine, theirs] = [body[key] ?? null, first.body[key] ?? null];
      if (mine !== theirs) {
        return {
          refuse:
            `rank ${rank} asks for ${key}=${mine}, rank ${first.rank} for ${key}=${theirs}: every rank must run the same plan ` +
            `(give every rank the same ${key}: the same dataset, batch size and world size, or the same value to trqat.client.Client)`,
        };
      }
    }
    return { ok: this.planBody() };
  }

  private planBody(): ControllerBodies['plan'] {
    return { total_steps: this.plan!.total_steps, steps_per_epoch: this.plan!.steps_per_epoch, start_step: this.startStep };
  }

  /**
   * R(0) = lambda * sqrt(b_w) uses the weight bits, which a client's script chose: when every layer
   * has the same bits and the config's differ, the config follows the model (R(0) is recomputed
   * unless tr.r0 was set to something else), and config.json records it.
   */
  private adoptBits(layers: readonly LayerInfo[]): void {
    const bits = [...new Set(layers.map((l) => l.weight_bits))];
    const acts = [...new Set(layers.map((l) => l.act_bits))];
    const quant = this.config.quant;
    if (bits.length !== 1) return;
    const weightBits = bits[0]!;
    const actBits = acts.length === 1 ? acts[0]! : quant.act_bits;
    if (weightBits === quant.weight_bits && actBits === quant.act_bits) return;
    const derived = Math.abs(this.config.tr.r0 - this.config.tr.lambda * Math.sqrt(quant.weight_bits)) <= 1e-12 * this.config.tr.r0;
    const r0 = derived ? this.config.tr.lambda * Math.sqrt(weightBits) : this.config.tr.r0;
    this.config = {
      ...this.config,
      quant: { ...quant, weight_bits: weightBits as typeof quant.weight_bits, act_bits: actBits as typeof quant.act_bits },
      tr: { ...this.config.tr, r0 },
    };
    this.record.updateConfig(this.config);
    if (weightBits !== quant.weight_bits) {
      this.warn(`the model has ${weightBits}-bit weights (the config said ${quant.weight_bits})${derived ? `: R(0) = lambda * sqrt(${weightBits}) = ${r0.toExponential(3)}` : ''}`);
    }
  }

  /** R(0) of a model with mixed bit-widths: the size-weighted mean of the layers' own targets (r0ForLayers). */
  private adoptR0(layers: readonly LayerInfo[]): void {
    const r0 = r0ForLayers(this.config, layers);
    if (r0 === this.config.tr.r0) return;
    this.config = { ...this.config, tr: { ...this.config.tr, r0 } };
    this.record.updateConfig(this.config);
    const bits = [...new Set(layers.map((l) => l.weight_bits))].sort((a, b) => a - b);
    this.warn(`the model's quantized layers have ${bits.join(', ')}-bit weights: R(0) = ${r0.toExponential(3)}, the size-weighted mean of lambda * sqrt(bits) over the layers`);
  }

  // --- steps -----------------------------------------------------------------------------------
  private directives(t: number): Directives {
    const plan = this.plan!;
    const done = t + 1;
    const final = done >= plan.total_steps;
    const stop = final || this.stopRequested;
    if (this.spec.kind === 'client') return { eval: false, save: null, stop };
    const boundary = (every: number) => final || (every > 0 && done % every === 0);
    const evaluate = boundary(plan.eval_every);
    let save: string | null = null;
    // With train.keep_best every evaluation is followed by a checkpoint: the best one must exist to be kept.
    if (stop || boundary(plan.checkpoint_every) || (evaluate && this.config.train.keep_best)) {
      const { staging, commit } = this.checkpoints.begin(done);
      this.pendingCheckpoint = { step: done, staging, commit, state: this.controller!.stateDict(), saved: false };
      save = staging;
    }
    return { eval: evaluate, save, stop };
  }

  private answer(ranks: number[], lr: LrBody): void {
    const sessions = this.table!.active();
    for (const rank of ranks) {
      const session = sessions.find((s) => s.rank === rank);
      if (session) this.table!.send(session, 'lr', lr);
      const then = lr.eval ? ' and evaluating' : lr.save ? ` and saving the checkpoint of step ${lr.step + 1}` : '';
      this.activity.set(rank, `finishing step ${lr.step}${then}`);
    }
    this.armProgress();
  }

  private onRecord(record: StepRecord): void {
    if (!Number.isFinite(record.loss) && record.samples > 0) {
      const checkpoint = this.record.info.checkpoint_step;
      this.fail(
        new RunFailure(
          `training diverged: the loss of step ${record.step} is ${record.loss}; lower optimizer.lr (or tr.talr.u0), or set train.grad_clip` +
            (checkpoint > 0 ? ` (the last checkpoint, step ${checkpoint}, is intact)` : ''),
        ),
      );
      return;
    }
    this.record.step(record);
    this.maybeCommit();
  }

  /** A checkpoint commits once rank 0 saved it and the log holds every step before it. */
  private maybeCommit(): void {
    const pending = this.pendingCheckpoint;
    if (!pending?.saved || !this.record.holds(pending.step)) return;
    this.pendingCheckpoint = null;
    this.record.flush(); // a checkpoint never points past what the log holds
    const evaluated = this.record.lastEval?.step === pending.step ? this.record.lastEval.top1 : null;
    const ref = pending.commit(
      {
        format: CHECKPOINT_FORMAT,
        step: pending.step,
        total_steps: this.plan!.total_steps,
        controller: pending.state,
        best_top1: this.record.bestTop1,
        elapsed_s: this.record.elapsed(),
        config: this.config,
      },
      evaluated,
    );
    this.record.checkpoint(ref);
  }

  // --- ending --------------------------------------------------------------------------------
  private checkFinished(): void {
    if (this.ended || !this.table) return;
    if (this.table.active().length > 0) return;
    // Under `trqat run`, a script that reported an error is reported with its exit status.
    if (this.clientError && this.spec.command) return;
    if (this.closedRanks.size >= (this.worldSize ?? 1)) this.finish();
  }

  private processExited(process: RunProcess, exit: ProcessExit): void {
    if (!this.processes.includes(process)) return; // stopped by an automatic restart
    if (this.spec.command) {
      // The first copy that failed by itself is the cause; the copies trqat stopped after it are not.
      if (process.failedByItself) this.causeExit ??= exit;
      if (this.causeExit === null || this.causeExit === exit) {
        if (this.ended) this.attempt(() => this.record.set({ exit }));
        else this.guard(() => this.record.set({ exit }));
      }
    }
    if (this.ended) return;
    const rank = process.rank;
    if (this.spec.kind === 'managed') {
      if (this.closedRanks.has(rank)) return;
      const hint = exit.spawnError ? ' (set worker.python or TRQAT_PYTHON to a Python with trqat installed, or run "bash scripts/setup.sh")' : '';
      const failure = new RunFailure(this.withStderr(`rank ${rank} ${describeExit(exit)}${hint} while ${this.doing(rank)}`, process));
      if (exit.spawnError) this.fail(failure);
      else this.blame(rank, 'exit', exit.signal !== null, () => this.crash(failure));
      return;
    }
    // trqat run: the command's exit decides the run's end if no bye did.
    const interrupted = exit.signal === 'SIGINT' || exit.code === 130;
    const failed = (exit.code !== 0 || exit.signal !== null) && !interrupted;
    if (failed) {
      const at = this.plan ? ` at step ${this.loop!.next} of ${this.plan.total_steps}` : ' before its first step';
      this.fail(new RunFailure(`the training script ${describeExit(exit)}${at}${this.clientError ? ` (${this.clientError})` : ''}`));
    } else if (this.processes.every((p) => p.exit !== null)) {
      if (!this.plan) this.fail(new RunFailure('the command exited (code 0) without a trqat client connecting: nothing was recorded (add trqat.client.Client to the training loop)'));
      else this.finish();
    }
  }

  private finish(): void {
    if (this.ended) return;
    if (this.clientError) {
      this.fail(new RunFailure(`the training script failed${this.plan ? ` at step ${this.loop!.next} of ${this.plan.total_steps}` : ''}: ${this.clientError}`));
      return;
    }
    let summary: RunSummary;
    try {
      this.loop?.flush();
      this.maybeCommit();
      const completed = this.plan !== null && this.loop!.next >= this.plan.total_steps && !this.pendingCheckpoint;
      summary = this.record.end(completed ? 'completed' : 'stopped', this.trackingError())!;
    } catch (error) {
      this.fail(error as Error); // run.json says failed, if it can still be written
      return;
    }
    this.ended = true;
    void this.release(false).then(() => this.resolveDone(summary));
  }

  /**
   * A rank's failure (`act`), unless another rank turns out to be the cause: with several ranks a
   * report waits CAUSE_GRACE_MS; an abnormal exit of another rank within it (after an error), or a
   * rank killed by a signal, is the cause instead. The first rank's own exit after its error changes nothing.
   */
  private blame(rank: number, kind: 'error' | 'exit', killed: boolean, act: () => void): void {
    const suspect = this.suspect;
    if (suspect) {
      if (suspect.rank === rank || (kind === 'error' || (suspect.kind === 'exit' && !killed))) return;
      clearTimeout(suspect.timer);
      this.suspect = null;
      act();
      return;
    }
    if (killed || (this.worldSize ?? 1) <= 1) {
      act();
      return;
    }
    const timer = setTimeout(() => {
      this.suspect = null;
      act();
    }, CAUSE_GRACE_MS);
    timer.unref();
    this.suspect = { rank, kind, timer };
  }

  /**
   * A rank died or hung. A run whose ranks this controller started restarts them all from the last
   * checkpoint, up to worker.max_restarts times within worker.restart_window_ms; the log is rewound
   * to the checkpoint and written again, so it stays continuous. Otherwise the run fails.
   */
  private crash(error: Error): void {
    const { max_restarts: max, restart_window_ms: window } = this.config.worker;
    const now = Date.now();
    const recent = this.restarts.filter((at) => now - at < window);
    const restartable = this.spec.kind === 'managed' && this.spec.launchRanks !== undefined;
    if (this.ended || !restartable || recent.length >= max) {
      if (max === 0 || !restartable) return this.fail(error);
      const [head, ...tail] = error.message.split('\n');
      const limit = ` (after ${recent.length} automatic restart(s) within ${Math.round(window / 60_000)} min; worker.max_restarts=${max})`;
      return this.fail(new RunFailure([head + limit, ...tail].join('\n')));
    }
    this.restarts.push(now);
    const count = ` (restart ${recent.length + 1} of at most ${max})`;
    void this.restart((from) => this.warn(`${error.message.split('\n')[0]}; restarting every rank from ${from}${count}`)).catch((failure: Error) => this.fail(failure));
  }

  /**
   * The worker cannot use the checkpoint it was to resume from (its worker.pt is unreadable or
   * crafted): it is skipped like a damaged one, and the ranks start again from the newest intact
   * one before it (not counted as a restart). Ranks this controller did not start cannot be restarted.
   */
  private fallBack(refused: CheckpointRef, reason: string): void {
    this.checkpoints.refuse(refused, reason);
    if (!this.spec.launchRanks) {
      this.fail(new RunFailure(`checkpoint ${refused.path} was refused by the worker: ${reason}; resume the run again to continue from an earlier checkpoint`));
      return;
    }
    void this.restart(null).catch((failure: Error) => this.fail(failure));
  }

  /** Stops every rank and starts them again from the newest intact checkpoint; `say` hears where from. */
  private async restart(say: ((from: string) => void) | null): Promise<void> {
    const checkpoint = this.checkpoints.latest((message) => this.warn(message));
    const from = checkpoint ? `the checkpoint of step ${checkpoint.step}` : 'the start (no checkpoint yet)';
    say?.(from);
    this.table!.abort(`restarting from ${from}`);
    this.table!.closeAll();
    if (this.suspect) clearTimeout(this.suspect.timer);
    this.suspect = null;
    const old = this.processes.splice(0);
    for (const process of old) process.stop('SIGKILL');
    await Promise.all(old.map((p) => p.exited));
    if (this.progressTimer) clearTimeout(this.progressTimer);
    if (this.pendingCheckpoint) removeQuietly(this.pendingCheckpoint.staging);
    this.pendingCheckpoint = null;
    this.resumeFrom = checkpoint;
    this.record.rewind(checkpoint?.step ?? 0);
    this.plan = null;
    this.loop = null;
    this.controller = null;
    this.closedRanks.clear();
    this.activity.clear();
    this.lastEvalStep = -1;
    if (!this.ended) await this.launch();
  }

  /**
   * Ends the run as failed. Nothing here may throw or wait on the disk: a write that fails again
   * (the disk that failed the run is still full) becomes a warning, and the run ends regardless.
   */
  private fail(error: Error): void {
    if (this.ended) return;
    this.ended = true;
    if (this.pendingCheckpoint) removeQuietly(this.pendingCheckpoint.staging);
    this.attempt(() => this.loop?.flush());
    this.attempt(() => this.record.end('failed', this.trackingError(), error.message));
    this.table?.abort(error.message.split('\n')[0]!);
    void this.release(true).then(() => this.rejectDone(error));
  }

  /** Runs a step of the run's handling; an error (a write that failed) fails the run. Returns undefined then. */
  private guard<T>(action: () => T): T | undefined {
    try {
      return action();
    } catch (error) {
      this.fail(error as Error);
      return undefined;
    }
  }

  /** On the way out: a write that fails is said, never thrown (the run is already ending). */
  private attempt(action: () => void): void {
    try {
      action();
    } catch (error) {
      this.warn(`${(error as Error).message} (while ending the run)`);
    }
  }

  /** Closes the socket, lets (or makes) the processes exit, frees the folder. */
  private async release(failed: boolean): Promise<void> {
    for (const timer of this.timers) clearTimeout(timer);
    if (this.suspect) clearTimeout(this.suspect.timer);
    if (this.progressTimer) clearTimeout(this.progressTimer);
    const running = this.processes.filter((p) => p.exit === null);
    // Processes whose session did not say bye have nothing left to do here.
    for (const process of running) if (failed || !this.closedRanks.has(process.rank)) process.stop();
    const exited = Promise.all(running.map((p) => p.exited));
    const inTime = await Promise.race([exited.then(() => true), delay(EXIT_GRACE_MS).then(() => false)]);
    if (!inTime) for (const process of running) process.stop();
    await exited;
    await this.table?.close();
    this.unlock();
  }

  // --- helpers -----------------------------------------------------------------------------------
  private trackingError(): number | null {
    return this.config.mode === 'tr' && this.controller ? this.controller.trackingError : null;
  }

  /** Ranks of the current processes that have said ready (not those replaced by an automatic restart). */
  private readyRanks(): number {
    return this.table?.active().filter((s) => s.ready !== null).length ?? 0;
  }

  private firstRank(): number {
    return this.table?.all().find((s) => s.ready !== null)?.rank ?? 0;
  }

  private processOf(rank: number): RunProcess | undefined {
    return this.spec.kind === 'managed' ? this.processes.find((p) => p.rank === rank) : undefined;
  }

  private doing(rank: number): string {
    return this.activity.get(rank) ?? 'starting up';
  }

  private withStderr(text: string, process: RunProcess | undefined): string {
    const tail = process?.stderrTail() ?? '';
    return tail ? `${text}\n--- last lines of rank ${process!.rank}'s stderr (${join(this.spec.runDir, logName(process!.rank, this.worldSize ?? 1))}) ---\n${tail}` : text;
  }

  /** A run that makes no progress for worker.command_timeout_ms fails (a rank stuck in a collective, say). */
  private armProgress(): void {
    if (this.progressTimer) clearTimeout(this.progressTimer);
    const limit = this.config.worker.command_timeout_ms;
    this.progressTimer = setTimeout(() => {
      const waiting = [...this.activity.entries()].map(([rank, what]) => `rank ${rank}: ${what}`).join('; ');
      this.fail(new RunFailure(`no progress within worker.command_timeout_ms (${limit} ms): ${waiting}`));
    }, limit);
    this.progressTimer.unref();
  }

  private later(fn: () => void, ms: number): void {
    const timer = setTimeout(fn, ms);
    timer.unref();
    this.timers.push(timer);
  }

  private emit(event: RunEvent): void {
    this.options.onEvent?.(event);
  }
}

/** The stderr log of a managed rank: worker.log for a single rank, worker-N.log for several. */
export function logName(rank: number, worldSize: number): string {
  return worldSize > 1 ? `worker-${rank}.log` : 'worker.log';
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
