import { ConfigError } from '../errors.js';
import type { ResolvedConfig } from '../config/resolve.js';
import { makeCredentials, peerEnv, writeAuthFile, type Credentials } from '../bridge/auth.js';
import type { ProcessExit, RunProcess } from '../bridge/launcher.js';
import type { ControllerBodies, LrBody, ProtocolError, WorkerBody, WorkerMessage } from '../bridge/protocol.js';
import { SessionTable, type Outcome, type Session, type SessionHandler } from '../bridge/sessions.js';
import { Admission } from './admission.js';
import { Blame } from './blame.js';
import { Checkpointing } from './checkpointing.js';
import { Checkpoints } from './checkpoints.js';
import { clientPolicy } from './client.js';
import { attempt, byeError, lostFailure, mismatchFailure, reportedFailure, RunFailure, scriptFailure } from './ending.js';
import { managedPolicy } from './managed.js';
import type { ExitContext, RunPolicy } from './policy.js';
import { openRunRecord, rankInfo, type RunEvent, type RunKind, type RunRecord, type RunSummary } from './record.js';
import type { RunHandle, RunLauncher, RunOptions, RunSpec } from './spec.js';
import type { Plugins } from '../schedules/plugin.js';
import { StepMismatch } from './step-loop.js';
import { Steps, type StepsHost } from './steps.js';
import { Restarts, type RestartHost } from './restarts.js';
import { Supervisor } from './supervisor.js';
import { Watchdog } from './watchdog.js';

export { RunFailure } from './ending.js';
export type { RunHandle, RunLauncher, RunOptions, RunSpec } from './spec.js';

const POLICIES: Record<RunKind, RunPolicy> = { managed: managedPolicy, client: clientPolicy };

/**
 * One run: its sessions (every rank of trqat's workers or of the user's script), its one step loop,
 * its record. What differs between the kinds of run is the policy's (`managed.ts`, `client.ts`);
 * who may join is `admission.ts`'s, the plan `plan.ts`'s, the processes `supervisor.ts`'s, the
 * checkpoints in flight `checkpointing.ts`'s, the restarts `restarts.ts`'s, the clocks `watchdog.ts`'s.
 */
export class Run implements SessionHandler, RunLauncher, StepsHost, RestartHost {
  readonly done: Promise<RunSummary>;
  private settings: ResolvedConfig;
  private readonly policy: RunPolicy;
  readonly record: RunRecord;
  private readonly credentials: Credentials;
  readonly checkpointing: Checkpointing;
  private readonly admission: Admission;
  private readonly supervisor: Supervisor;
  readonly watchdog: Watchdog;
  private readonly restarts: Restarts;
  private readonly unlock: () => void;
  private table: SessionTable | null = null;
  private started: Steps | null = null;
  private clientError: string | null = null;
  /** Which rank's failure is reported when several fail together (blame.ts). */
  private readonly blame = new Blame();
  private stopping = false;
  private ended = false;
  private resolveDone!: (summary: RunSummary) => void;
  private rejectDone!: (error: Error) => void;

  private constructor(
    private readonly spec: RunSpec,
    private readonly options: RunOptions,
  ) {
    const { config } = spec;
    this.settings = config;
    this.policy = POLICIES[spec.kind];
    this.credentials = makeCredentials(config.bridge.endpoint, config.bridge.curve);
    const checkpoints = new Checkpoints(spec.runDir, config.train.keep_checkpoints, config.train.keep_best);
    this.checkpointing = new Checkpointing(checkpoints);
    this.admission = new Admission(this.policy, () => this.settings);
    this.supervisor = new Supervisor(spec.runDir, this.policy.processesAreRanks, () => this.admission.worldSize ?? 1);
    this.watchdog = new Watchdog(config.worker.command_timeout_ms, (message) => this.fail(new RunFailure(message)));
    const restartable = this.policy.restartable(spec.launchRanks !== undefined);
    this.restarts = new Restarts(checkpoints, spec.checkpoint, restartable, config.worker.max_restarts, config.worker.restart_window_ms, this);
    const opened = openRunRecord(spec, (event) => this.emit(event), (message) => this.warn(message));
    this.record = opened.record;
    this.unlock = opened.unlock;
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
    try {
      await run.launch();
    } catch (error) {
      run.fail(error as Error); // run.json says failed, the socket and the folder are released
      throw error;
    }
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

  /** TRQAT_ENDPOINT, the credentials and the liveness settings, for processes this run starts. */
  peerEnv(): Record<string, string> {
    return peerEnv(this.credentials, this.endpoint, this.settings.worker, this.spec.runDir);
  }

  /** Starts the ranks (if this run starts them) under the policy's startup limit. */
  private async launch(): Promise<void> {
    this.watchdog.startup(this.policy.startupTimeoutMs(this.settings), {
      ended: () => this.ended,
      planned: () => this.started !== null,
      ready: () => this.table?.active().filter((s) => s.ready !== null).length ?? 0, // not those replaced by a restart
      worldSize: () => this.admission.worldSize,
    });
    await this.spec.launchRanks?.(this);
  }

  /** Supervises a process this run started: its exit before its session's bye is handled by the policy. */
  supervise(process: RunProcess): void {
    // Its log cannot be written (a full disk): the run stops rather than go on without a record of it.
    this.supervisor.add(process, (exit) => this.processExited(process, exit), (error) => this.fail(error));
  }

  stop(): void {
    if (this.ended || this.stopping) return;
    this.stopping = true;
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

  hello(hello: WorkerBody<'hello'>): string | null {
    return this.admission.hello(hello, { ended: this.ended, stopping: this.stopping, active: this.table?.active() ?? [] });
  }

  welcome(session: Session): ControllerBodies['welcome'] {
    const info = rankInfo(session.hello);
    this.guard(() => this.record.addRank(info));
    this.watchdog.set(session.rank, 'building the model and loading data');
    this.emit({ type: 'rank', rank: info, worldSize: session.hello.world_size });
    return { config: this.settings, resume: this.restarts.resumeFrom?.path ?? null };
  }

  ready(session: Session, body: WorkerBody<'ready'>): Outcome<ControllerBodies['plan']> {
    if (this.ended) return { refuse: 'this run has ended' };
    const outcome = this.guard(() => this.plan(session.rank, body)) ?? { refuse: 'this run has failed' };
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
    const process = this.supervisor.ofRank(session.rank);
    if (process?.exit) return; // it has exited, not hung: its exit is the report
    this.emit({ type: 'rank-left', rank: rankInfo(session.hello), reason: `lost: ${reason}` });
    process?.stop('SIGKILL'); // hung: it would not answer SIGTERM any sooner
    this.crash(lostFailure(session.hello, reason, this.watchdog.doing(session.rank), (text) => this.supervisor.withStderr(text, process)));
  }

  refused(error: ProtocolError): void {
    if (this.supervisor.refusedRank(error)) this.fail(new RunFailure(`the worker was refused at the handshake: ${error.message}`));
  }

  warn(message: string): void {
    this.emit({ type: 'warning', message });
  }

  private dispatch(session: Session, message: WorkerMessage): void {
    const loop = this.started?.loop;
    const rank = session.rank;
    switch (message.type) {
      case 'step': {
        const refusal = this.started!.step(rank, message.body as WorkerBody<'step'>);
        if (refusal !== null) this.table!.send(session, 'error', { message: refusal });
        return;
      }
      case 'evaluated':
        return this.started!.evaluated(rank, message.body as WorkerBody<'evaluated'>);
      case 'saved':
        return this.started!.saved(rank, message.body as WorkerBody<'saved'>);
      case 'bye': {
        const body = message.body as WorkerBody<'bye'>;
        loop?.stats(rank, body.last);
        this.admission.bye(rank);
        this.watchdog.set(rank, 'exiting');
        this.clientError ??= byeError(rank, body.error);
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
        if (body.kind === 'checkpoint' && this.restarts.resumeFrom && !this.started) return this.restarts.fallBack(body.message);
        const failure = reportedFailure(rank, this.watchdog.doing(rank), body, (text) => this.supervisor.withStderr(text, this.supervisor.ofRank(rank)));
        return this.blame.report(rank, 'error', false, this.admission.worldSize ?? 1, () => this.fail(failure));
      }
      default:
        this.table!.send(session, 'error', { message: `"${message.type}" is not expected here` });
    }
  }

  /** The first ready plans the run (steps.ts); a further one joins it. */
  private plan(rank: number, body: WorkerBody<'ready'>): Outcome<ControllerBodies['plan']> {
    if (this.started) {
      const refusal = this.started.join(rank, body);
      return refusal !== null ? { refuse: refusal } : { ok: this.started.body() };
    }
    const steps = Steps.begin(this, this.policy, rank, body, this.admission.worldSize!, this.restarts.resumeFrom, this.restarts.count > 0, this.endpoint);
    if (typeof steps === 'string') return { refuse: steps };
    this.started = steps;
    return { ok: steps.body() };
  }

  config(): ResolvedConfig {
    return this.settings;
  }

  get plugins(): Plugins | undefined {
    return this.spec.plugins;
  }

  adopt(config: ResolvedConfig): void {
    this.settings = config;
    this.record.updateConfig(config);
  }

  stopRequested(): boolean {
    return this.stopping;
  }

  send(rank: number, lr: LrBody): void {
    const session = this.table!.active().find((s) => s.rank === rank);
    if (session) this.table!.send(session, 'lr', lr);
  }

  private checkFinished(): void {
    if (this.ended || !this.table) return;
    if (this.table.active().length > 0) return;
    // Under `trqat run`, a script that reported an error is reported with its exit status.
    if (this.clientError && this.spec.command) return;
    if (this.admission.allSaidBye()) this.finish();
  }

  private processExited(process: RunProcess, exit: ProcessExit): void {
    if (this.spec.command && this.supervisor.isCause(process, exit)) {
      if (this.ended) this.attempt(() => this.record.set({ exit }));
      else this.guard(() => this.record.set({ exit }));
    }
    if (this.ended) return;
    const run: ExitContext = {
      planned: this.started !== null,
      clientError: this.clientError,
      position: () => this.started?.position() ?? ' before its first step',
      hasSaidBye: (rank) => this.admission.hasSaidBye(rank),
      allExited: () => this.supervisor.allExited(),
      rankFailure: (text, process) => new RunFailure(this.supervisor.withStderr(`${text} while ${this.watchdog.doing(process.rank)}`, process)),
      fail: (error) => this.fail(error),
      rankCrashed: (rank, killed, error) => this.blame.report(rank, 'exit', killed, this.admission.worldSize ?? 1, () => this.crash(error)),
      finish: () => this.finish(),
    };
    this.policy.exited(run, process, exit);
  }

  private finish(): void {
    if (this.ended) return;
    if (this.clientError) return this.fail(scriptFailure(this.clientError, this.started?.position() ?? ''));
    let summary: RunSummary;
    try {
      this.started?.loop.flush();
      this.started?.commit();
      const completed = this.started?.complete ?? false;
      summary = this.record.end(completed ? 'completed' : 'stopped', (this.started?.trackingError() ?? null))!;
    } catch (error) {
      this.fail(error as Error); // run.json says failed, if it can still be written
      return;
    }
    this.ended = true;
    void this.release(false).then(() => this.resolveDone(summary));
  }

  /** A rank died or hung: its run restarts every rank, or fails (restarts.ts). */
  private crash(error: Error): void {
    if (!this.ended) this.restarts.crash(error);
  }

  /** A restart's first half (restarts.ts): every rank stopped and forgotten. */
  async stopRanks(reason: string): Promise<void> {
    this.table!.abort(reason);
    this.table!.closeAll();
    this.blame.clear();
    await this.supervisor.replaceAll();
    this.watchdog.restart();
    this.checkpointing.discard();
  }

  /** A restart's second half: the log back at `step`, the ranks started again to plan the run anew. */
  async startRanks(step: number): Promise<void> {
    this.record.rewind(step);
    this.started = null;
    this.admission.restart();
    if (!this.ended) await this.launch();
  }

  /**
   * Ends the run as failed. Nothing here may throw or wait on the disk: a write that fails again
   * (the disk that failed the run is still full) becomes a warning, and the run ends regardless.
   */
  fail(error: Error): void {
    if (this.ended) return;
    this.ended = true;
    this.checkpointing.discard();
    this.attempt(() => this.started?.loop.flush());
    this.attempt(() => this.record.end('failed', (this.started?.trackingError() ?? null), error.message));
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
    this.blame.clear();
    await this.supervisor.release(failed, (rank) => this.admission.hasSaidBye(rank));
    await this.table?.close();
    this.unlock();
  }

  private emit(event: RunEvent): void {
    this.options.onEvent?.(event);
  }
}
