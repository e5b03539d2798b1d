import { ConfigError } from '../errors.js';
import { lockRunDir, removeQuietly } from '../files.js';
import type { ResolvedConfig } from '../config/resolve.js';
import { controllerEnv, makeCredentials, peerEnv, writeAuthFile, type Credentials } from '../bridge/auth.js';
import type { ProcessExit, RunProcess } from '../bridge/launcher.js';
import { VersionMismatchError, type ControllerBodies, type LayerInfo, type LrBody, type ProtocolError, type WorkerBody, type WorkerMessage } from '../bridge/protocol.js';
import { SessionTable, type Outcome, type Session, type SessionHandler } from '../bridge/sessions.js';
import { TrController } from '../schedules/controller.js';
import { Admission, joinRefusal } from './admission.js';
import { Checkpointing, restoreController } from './checkpointing.js';
import { Checkpoints, type CheckpointRef } from './checkpoints.js';
import { clientPolicy } from './client.js';
import { attempt, divergenceFailure, mismatchFailure, restartLimitFailure, RunFailure, scriptFailure } from './ending.js';
import { managedPolicy } from './managed.js';
import type { StepRecord } from './metrics.js';
import { planRun } from './plan.js';
import type { ExitContext, RunPolicy } from './policy.js';
import { rankInfo, RunRecord, type RunEvent, type RunKind, type RunPlan, type RunSummary } from './record.js';
import { StepLoop, StepMismatch, type Directives } from './step-loop.js';
import { evalRecord, plannedDirectives } from './steps.js';
import { Restarts, Supervisor } from './supervisor.js';
import { Watchdog } from './watchdog.js';

export { RunFailure } from './ending.js';
export { logName } from './supervisor.js';

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

const POLICIES: Record<RunKind, RunPolicy> = { managed: managedPolicy, client: clientPolicy };

/** What a run has once its first rank is ready. */
interface Started {
  plan: RunPlan;
  controller: TrController;
  loop: StepLoop;
  layers: LayerInfo[];
  startStep: number;
}

/**
 * One run: its sessions (every rank of trqat's workers or of the user's script), its one step loop,
 * its record. What differs between the kinds of run is the policy's (`managed.ts`, `client.ts`);
 * who may join is `admission.ts`'s, the plan `plan.ts`'s, the processes `supervisor.ts`'s, the
 * checkpoints in flight `checkpointing.ts`'s, the clocks `watchdog.ts`'s.
 */
export class Run implements SessionHandler {
  readonly done: Promise<RunSummary>;
  private config: ResolvedConfig;
  private readonly policy: RunPolicy;
  private readonly record: RunRecord;
  private readonly credentials: Credentials;
  private readonly checkpointing: Checkpointing;
  private readonly admission: Admission;
  private readonly supervisor: Supervisor;
  private readonly watchdog: Watchdog;
  private readonly restarts: Restarts;
  private readonly unlock: () => void;
  private table: SessionTable | null = null;
  private started: Started | null = null;
  private lastEvalStep = -1;
  /** The checkpoint the ranks restore from: the resumed one, then the latest after an automatic restart. */
  private resumeFrom: CheckpointRef | null;
  private clientError: string | null = null;
  private stopRequested = false;
  private ended = false;
  private resolveDone!: (summary: RunSummary) => void;
  private rejectDone!: (error: Error) => void;

  private constructor(
    private readonly spec: RunSpec,
    private readonly options: RunOptions,
  ) {
    const { config } = spec;
    this.config = config;
    this.policy = POLICIES[spec.kind];
    this.resumeFrom = spec.checkpoint;
    this.credentials = makeCredentials(config.bridge.endpoint, config.bridge.curve);
    this.checkpointing = new Checkpointing(new Checkpoints(spec.runDir, config.train.keep_checkpoints, config.train.keep_best));
    this.admission = new Admission(this.policy, () => this.config);
    this.supervisor = new Supervisor(spec.runDir, this.policy.processesAreRanks);
    this.watchdog = new Watchdog(config.worker.command_timeout_ms, (message) => this.fail(new RunFailure(message)));
    this.restarts = new Restarts(config.worker.max_restarts, config.worker.restart_window_ms);
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
      record = new RunRecord(spec.runDir, config, spec.kind, spec.checkpoint?.step ?? null, (event) => this.emit(event));
      if (spec.configChanged) record.updateConfig(config);
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
    let authFile: string | null = null;
    try {
      run.table = await SessionTable.bind(spec.config.bridge.endpoint, run.credentials, spec.config.worker.heartbeat_timeout_ms, run);
      if (run.policy.writesAuthFile(spec.config)) authFile = writeAuthFile(spec.runDir, run.credentials, run.endpoint, spec.config.worker);
    } catch (error) {
      run.fail(error as Error);
      throw error;
    }
    const signal = options.signal;
    if (signal?.aborted) run.stop();
    else signal?.addEventListener('abort', () => run.stop(), { once: true });
    run.emit({ type: 'listening', endpoint: run.endpoint, runDir: spec.runDir, authFile });
    await run.launch();
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
      ...controllerEnv(this.config.worker),
      TRQAT_RUN_DIR: this.spec.runDir,
      // A process this controller starts itself exits as soon as the controller is gone (its parent changes).
      TRQAT_CONTROLLER_PID: String(process.pid),
    };
  }

  /** Starts the ranks (if this run starts them) under the policy's startup limit. */
  private async launch(): Promise<void> {
    const limit = this.policy.startupTimeoutMs(this.config);
    if (limit !== null) {
      this.watchdog.later(() => {
        const worldSize = this.admission.worldSize;
        if (this.ended || (this.started && this.readyRanks() >= worldSize!)) return;
        this.fail(new RunFailure(`not every rank was ready within worker.startup_timeout_ms (${limit} ms): ${this.readyRanks()} of ${worldSize ?? '?'} ready`));
      }, limit);
    }
    await this.spec.launchRanks?.(this);
  }

  /** Supervises a process this run started: its exit before its session's bye is handled by the policy. */
  supervise(process: RunProcess): void {
    // Its log cannot be written (a full disk): the run stops rather than go on without a record of it.
    this.supervisor.add(process, (exit) => this.processExited(process, exit), (error) => this.fail(error));
  }

  stop(): void {
    if (this.ended || this.stopRequested) return;
    this.stopRequested = true;
    const grace = this.policy.stopGraceMs(this.options.stopGraceMs);
    if (!this.table || this.table.active().length === 0) {
      if (grace !== null || !this.started) this.finish();
      return;
    }
    if (grace !== null) this.watchdog.later(() => this.finish(), grace);
  }

  stopNow(reason: string): void {
    if (this.ended) return;
    this.ended = true;
    this.attempt(() => this.started?.loop.flush());
    this.attempt(() => this.record.end('stopped', this.started?.controller.trackingError ?? null, reason));
    this.table?.abort(reason);
    this.supervisor.killAll();
    this.unlock();
  }

  // --- sessions --------------------------------------------------------------------------------
  hello(hello: WorkerBody<'hello'>): string | null {
    return this.admission.hello(hello, { ended: this.ended, stopping: this.stopRequested, active: this.table?.active() ?? [] });
  }

  welcome(session: Session): ControllerBodies['welcome'] {
    const info = rankInfo(session.hello);
    this.guard(() => this.record.addRank(info));
    this.watchdog.set(session.rank, 'building the model and loading data');
    this.emit({ type: 'rank', rank: info, worldSize: session.hello.world_size });
    return { config: this.config, resume: this.resumeFrom?.path ?? null };
  }

  ready(session: Session, body: WorkerBody<'ready'>): Outcome<ControllerBodies['plan']> {
    if (this.ended) return { refuse: 'this run has ended' };
    const outcome = this.guard(() => (this.started ? this.join(this.started, body) : this.start(body))) ?? { refuse: 'this run has failed' };
    if ('ok' in outcome) this.watchdog.set(session.rank, `waiting for the other ranks before step ${this.started!.startStep}`);
    return outcome;
  }

  message(session: Session, message: WorkerMessage): void {
    if (this.ended) return;
    try {
      this.dispatch(session, message);
    } catch (error) {
      this.fail(error instanceof StepMismatch ? mismatchFailure(error.message) : (error as Error));
    }
  }

  lost(session: Session, reason: string): void {
    if (this.ended) return;
    this.emit({ type: 'rank-left', rank: rankInfo(session.hello), reason: `lost: ${reason}` });
    const process = this.supervisor.ofRank(session.rank);
    process?.stop('SIGKILL'); // hung: it would not answer SIGTERM any sooner
    const text = `rank ${session.rank} (pid ${session.hello.pid} on ${session.hello.hostname}) stopped answering (${reason}) while ${this.watchdog.doing(session.rank)}`;
    this.crash(new RunFailure(this.withStderr(text, process)));
  }

  refused(error: ProtocolError): void {
    // Our own worker with another protocol version cannot take part: say so instead of waiting for it.
    // (A user's script raises the refusal itself and exits, which ends a client run.)
    if (this.policy.processesAreRanks && error instanceof VersionMismatchError && error.pid !== null && this.supervisor.started(error.pid)) {
      this.fail(new RunFailure(`the worker was refused at the handshake: ${error.message}`));
    }
  }

  warn(message: string): void {
    this.emit({ type: 'warning', message });
  }

  // --- messages of ready sessions -----------------------------------------------------------
  private dispatch(session: Session, message: WorkerMessage): void {
    const loop = this.started?.loop;
    const rank = session.rank;
    switch (message.type) {
      case 'step': {
        const body = message.body as WorkerBody<'step'>;
        this.watchdog.set(rank, `training step ${body.step}`);
        const refusal = loop!.report(rank, body);
        if (refusal !== null) this.table!.send(session, 'error', { message: refusal });
        return;
      }
      case 'evaluated': {
        const body = message.body as WorkerBody<'evaluated'>;
        loop!.stats(rank, body.last);
        this.onEvaluated(body);
        this.watchdog.set(rank, this.checkpointing.saving ? `saving the checkpoint of step ${loop!.next}` : `training step ${loop!.next}`);
        return;
      }
      case 'saved': {
        const body = message.body as WorkerBody<'saved'>;
        loop!.stats(rank, body.last);
        this.checkpointing.saved();
        this.maybeCommit();
        this.watchdog.set(rank, `training step ${loop!.next}`);
        return;
      }
      case 'bye': {
        const body = message.body as WorkerBody<'bye'>;
        loop?.stats(rank, body.last);
        this.admission.bye(rank);
        this.watchdog.set(rank, 'exiting');
        // Ctrl-C in the script (KeyboardInterrupt) is a stop, not a failure.
        if (body.error && !body.error.startsWith('KeyboardInterrupt')) this.clientError ??= `rank ${rank} reported: ${body.error}`;
        this.emit({ type: 'rank-left', rank: rankInfo(session.hello), reason: body.error ? `error: ${body.error}` : 'bye' });
        loop?.leave(rank);
        this.checkFinished();
        return;
      }
      case 'progress': {
        this.emit({ type: 'progress', ...(message.body as WorkerBody<'progress'>) });
        if (this.started) this.watchdog.progress(); // a long evaluation that reports is making progress
        return;
      }
      case 'error': {
        const body = message.body as WorkerBody<'error'>;
        if (!this.policy.errorsFail) return this.warn(`rank ${rank} (pid ${session.hello.pid}) reported an error: ${body.message}`);
        if (body.kind === 'config') return this.fail(new ConfigError(body.message));
        // The traceback says what the stderr tail would, without the repetition.
        const text = `rank ${rank} reported an error while ${this.watchdog.doing(rank)}: ${body.message}`;
        return this.fail(new RunFailure(body.traceback ? `${text}\n${body.traceback.trimEnd()}` : this.withStderr(text, this.supervisor.ofRank(rank))));
      }
      default:
        this.table!.send(session, 'error', { message: `"${message.type}" is not expected here` });
    }
  }

  private onEvaluated(body: WorkerBody<'evaluated'>): void {
    const { loop, plan } = this.started!;
    const step = loop.next;
    if (step === this.lastEvalStep) return; // every rank of a script may report the same evaluation: the first is logged
    this.lastEvalStep = step;
    this.record.eval(evalRecord(body, step, plan.steps_per_epoch, this.trackingError()));
    this.watchdog.progress();
  }

  // --- the plan ------------------------------------------------------------------------------
  private start(body: WorkerBody<'ready'>): Outcome<ControllerBodies['plan']> {
    const worldSize = this.admission.worldSize!;
    const planned = planRun(this.policy, this.config, body, worldSize);
    for (const warning of planned.warnings ?? []) this.warn(warning);
    if ('refuse' in planned) return planned;
    if (planned.configChanged) {
      this.config = planned.config;
      this.record.updateConfig(this.config);
    }
    const { plan } = planned;
    const start = body.start_step;
    const controller = new TrController(this.config, plan.total_steps, body.layers.map((layer) => layer.numel), body.steps_per_epoch);
    const restored = restoreController(controller, this.resumeFrom, body, this.record, this.restarts.count > 0, (message) => this.warn(message));
    if (restored !== null) return { refuse: restored };
    const loop = new StepLoop(controller, body.layers, plan.total_steps, body.steps_per_epoch, worldSize, start, {
      directives: (t) => this.directives(t),
      answer: (ranks, lr) => this.answer(ranks, lr),
      record: (record) => this.onRecord(record),
    });
    this.started = { plan, controller, loop, layers: body.layers, startStep: start };
    this.record.start(plan, body, start, this.endpoint, controller.quantizedWeights);
    this.watchdog.progress();
    return { ok: this.planBody(this.started) };
  }

  /** A further rank's ready must describe the same model and start. */
  private join(started: Started, body: WorkerBody<'ready'>): Outcome<ControllerBodies['plan']> {
    const firstRank = this.table?.all().find((s) => s.ready !== null)?.rank ?? 0;
    const refusal = joinRefusal({ layers: started.layers, startStep: started.startStep, rank: firstRank }, body);
    return refusal !== null ? { refuse: refusal } : { ok: this.planBody(started) };
  }

  private planBody({ plan, startStep }: Started): ControllerBodies['plan'] {
    return { total_steps: plan.total_steps, steps_per_epoch: plan.steps_per_epoch, start_step: startStep };
  }

  // --- steps -----------------------------------------------------------------------------------
  private directives(t: number): Directives {
    const { plan, controller } = this.started!;
    const planned = plannedDirectives(plan, t, this.stopRequested, this.policy.directives, this.config.train.keep_best);
    const save = planned.saveStep === null ? null : this.checkpointing.begin(planned.saveStep, controller.stateDict());
    return { eval: planned.eval, save, stop: planned.stop };
  }

  private answer(ranks: number[], lr: LrBody): void {
    const sessions = this.table!.active();
    for (const rank of ranks) {
      const session = sessions.find((s) => s.rank === rank);
      if (session) this.table!.send(session, 'lr', lr);
      const then = lr.eval ? ' and evaluating' : lr.save ? ` and saving the checkpoint of step ${lr.step + 1}` : '';
      this.watchdog.set(rank, `finishing step ${lr.step}${then}`);
    }
    this.watchdog.progress();
  }

  private onRecord(record: StepRecord): void {
    if (!Number.isFinite(record.loss) && record.samples > 0) return this.fail(divergenceFailure(record, this.record.info.checkpoint_step));
    this.record.step(record);
    this.maybeCommit();
  }

  private maybeCommit(): void {
    if (this.started) this.checkpointing.maybeCommit(this.record, this.started.plan.total_steps, this.config);
  }

  // --- ending --------------------------------------------------------------------------------
  private checkFinished(): void {
    if (this.ended || !this.table) return;
    if (this.table.active().length > 0) return;
    // Under `trqat run`, a script that reported an error is reported with its exit status.
    if (this.clientError && this.spec.command) return;
    if (this.admission.allSaidBye()) this.finish();
  }

  private processExited(process: RunProcess, exit: ProcessExit): void {
    if (this.spec.command) {
      if (this.ended) this.attempt(() => this.record.set({ exit }));
      else this.guard(() => this.record.set({ exit }));
    }
    if (this.ended) return;
    this.policy.exited(this.exitContext(), process, exit);
  }

  private exitContext(): ExitContext {
    return {
      planned: this.started !== null,
      clientError: this.clientError,
      position: () => this.position() || ' before its first step',
      hasSaidBye: (rank) => this.admission.hasSaidBye(rank),
      allExited: () => this.supervisor.allExited(),
      rankFailure: (text, process) => new RunFailure(this.withStderr(`${text} while ${this.watchdog.doing(process.rank)}`, process)),
      fail: (error) => this.fail(error),
      crash: (error) => this.crash(error),
      finish: () => this.finish(),
    };
  }

  private finish(): void {
    if (this.ended) return;
    if (this.clientError) return this.fail(scriptFailure(this.clientError, this.position()));
    let summary: RunSummary;
    try {
      this.started?.loop.flush();
      this.maybeCommit();
      const completed = this.started !== null && this.started.loop.next >= this.started.plan.total_steps && !this.checkpointing.saving;
      summary = this.record.end(completed ? 'completed' : 'stopped', this.trackingError())!;
    } catch (error) {
      this.fail(error as Error); // run.json says failed, if it can still be written
      return;
    }
    this.ended = true;
    void this.release(false).then(() => this.resolveDone(summary));
  }

  /**
   * A rank died or hung. A run whose ranks this controller started restarts them all from the last
   * checkpoint, up to worker.max_restarts times within worker.restart_window_ms; the log is rewound
   * to the checkpoint and written again, so it stays continuous. Otherwise the run fails.
   */
  private crash(error: Error): void {
    const { max_restarts: max, restart_window_ms: window } = this.config.worker;
    const restartable = this.policy.restartable(this.spec.launchRanks !== undefined);
    const count = this.ended || !restartable ? null : this.restarts.take();
    if (count === null) {
      if (max === 0 || !restartable) return this.fail(error);
      return this.fail(restartLimitFailure(error, this.restarts.recent(), window, max));
    }
    void this.restart(error, count).catch((failure: Error) => this.fail(failure));
  }

  private async restart(error: Error, count: number): Promise<void> {
    const checkpoint = this.checkpointing.checkpoints.latest((message) => this.warn(message));
    const from = checkpoint ? `the checkpoint of step ${checkpoint.step}` : 'the start (no checkpoint yet)';
    this.warn(`${error.message.split('\n')[0]}; restarting every rank from ${from} (restart ${count} of at most ${this.config.worker.max_restarts})`);
    this.table!.abort(`restarting from ${from}`);
    this.table!.closeAll();
    await this.supervisor.replaceAll();
    this.watchdog.restart();
    this.checkpointing.discard();
    this.resumeFrom = checkpoint;
    this.record.rewind(checkpoint?.step ?? 0);
    this.started = null;
    this.admission.restart();
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
    this.checkpointing.discard();
    this.attempt(() => this.started?.loop.flush());
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

  private attempt(action: () => void): void {
    attempt(action, (message) => this.warn(message));
  }

  /** Closes the socket, lets (or makes) the processes exit, frees the folder. */
  private async release(failed: boolean): Promise<void> {
    this.watchdog.clear();
    await this.supervisor.release(failed, (rank) => this.admission.hasSaidBye(rank));
    await this.table?.close();
    this.unlock();
  }

  // --- helpers -----------------------------------------------------------------------------------
  private trackingError(): number | null {
    return this.config.mode === 'tr' && this.started ? this.started.controller.trackingError : null;
  }

  /** " at step N of T" once the run has a plan, else "". */
  private position(): string {
    return this.started ? ` at step ${this.started.loop.next} of ${this.started.plan.total_steps}` : '';
  }

  /** Ranks of the current processes that have said ready (not those replaced by an automatic restart). */
  private readyRanks(): number {
    return this.table?.active().filter((s) => s.ready !== null).length ?? 0;
  }

  private withStderr(text: string, process: RunProcess | undefined): string {
    return this.supervisor.withStderr(text, process, this.admission.worldSize ?? 1);
  }

  private emit(event: RunEvent): void {
    this.options.onEvent?.(event);
  }
}
