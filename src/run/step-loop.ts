import type { LastStats, LrBody, LayerInfo, TransitionDistance, WorkerBody } from '../bridge/protocol.js';
import type { TrController } from '../schedules/controller.js';
import type { StepDecision } from '../schedules/decision.js';
import { StepRate, stepRecord, type StepRecord } from './metrics.js';

/** What the ranks do after a step, besides the optimizer update. */
export interface Directives {
  eval: boolean;
  save: string | null;
  stop: boolean;
}

export interface StepLoopHooks {
  /** The directives of step t (asked once, when the step is decided). */
  directives(step: number): Directives;
  /** Sends the one decision of a step to every rank that reported it. */
  answer(ranks: number[], lr: LrBody): void;
  /** A step's line, once every rank's statistics for it are in. */
  record(record: StepRecord): void;
  /** Not fatal, said once: ranks that trained a step on different batch sizes. */
  warn?(message: string): void;
}

/** A step's decision, kept until every rank has reported the step's loss statistics. */
interface Decided {
  decision: StepDecision;
  counts: number[] | null;
  dist?: TransitionDistance;
  /** Ranks that still owe their statistics. */
  owing: Set<number>;
  stats: LastStats[];
  /** Each rank's samples of the step, to notice ranks on different batch sizes. */
  samples: Map<number, number>;
}

/**
 * The one step loop of every run: waits for every rank's report of step t, checks that they agree,
 * decides the step once (R, K, U and the LRs), and answers all ranks with that decision. The loss
 * of a step arrives with a rank's next message; a step's line is written when every rank's is in.
 */
export class StepLoop {
  /** The next step to decide. */
  next: number;
  /** Ranks that take part (a rank that said bye or was lost no longer holds the others back). */
  private readonly ranks: Set<number>;
  private reports = new Map<number, number[] | null>();
  /** The distance diagnostics of the step being reported (rank 0 sends them, every train.diagnostics_every steps). */
  private dist: TransitionDistance | undefined;
  private readonly decided = new Map<number, Decided>();
  /** The step whose statistics each rank owes (the last step it got the LRs of). */
  private readonly owes = new Map<number, number>();
  private stopped = false;
  private readonly rate = new StepRate();

  constructor(
    private readonly controller: TrController,
    private readonly layers: readonly LayerInfo[],
    private readonly totalSteps: number,
    private readonly stepsPerEpoch: number,
    worldSize: number,
    startStep: number,
    private readonly hooks: StepLoopHooks,
  ) {
    this.next = startStep;
    this.ranks = new Set(Array.from({ length: worldSize }, (_, rank) => rank));
  }

  /** True once a decision with `stop` has gone out: later steps are refused. */
  get hasStopped(): boolean {
    return this.stopped;
  }

  /**
   * A rank's report of a step. Returns a refusal for the rank, or throws StepMismatch when the
   * ranks disagree (the run cannot go on).
   */
  report(rank: number, body: WorkerBody<'step'>): string | null {
    const t = body.step;
    this.stats(rank, body.last);
    if (this.stopped) return `the controller stopped the run at step ${this.next - 1}`;
    if (t >= this.totalSteps) return `step ${t} is past the end of the run (${this.totalSteps} steps)`;
    if (t !== this.next) return `step ${t} is out of order: the run is at step ${this.next} (steps run one after another, every rank in lockstep)`;
    if (this.reports.has(rank)) return `rank ${rank} already reported step ${t}`;
    const counts = body.counts;
    if (counts !== null && counts.length !== this.layers.length) {
      return `step ${t}: ${counts.length} per-layer counts for ${this.layers.length} quantized layers`;
    }
    const over = counts?.findIndex((count, i) => count > this.layers[i]!.numel) ?? -1;
    if (over >= 0) return `step ${t}: layer '${this.layers[over]!.name}' reports ${counts![over]} transitions but has ${this.layers[over]!.numel} weights`;
    this.reports.set(rank, counts);
    this.dist ??= body.dist;
    this.decideWhenComplete();
    return null;
  }

  /** The statistics of a rank's last step (carried by its step, evaluated, saved or bye message). */
  stats(rank: number, last: LastStats | null | undefined): void {
    const step = this.owes.get(rank);
    if (step === undefined) return;
    this.owes.delete(rank);
    const decided = this.decided.get(step);
    if (!decided) return;
    decided.owing.delete(rank);
    if (last) decided.stats.push(last);
    if (last?.samples != null) decided.samples.set(rank, last.samples);
    this.writeCompleted();
  }

  /** A rank that said bye or was lost: it no longer holds back the steps of the others. */
  leave(rank: number): void {
    this.ranks.delete(rank);
    this.reports.delete(rank);
    this.owes.delete(rank);
    for (const decided of this.decided.values()) decided.owing.delete(rank);
    this.writeCompleted();
    this.decideWhenComplete();
  }

  /** Writes every decided step, with whatever statistics arrived (the run is ending). */
  flush(): void {
    for (const decided of this.decided.values()) decided.owing.clear();
    this.writeCompleted();
  }

  private decideWhenComplete(): void {
    if (this.stopped || this.ranks.size === 0 || [...this.ranks].some((rank) => !this.reports.has(rank))) return;
    const t = this.next;
    const reports = [...this.reports.entries()].sort(([a], [b]) => a - b);
    const [firstRank, counts] = reports[0]!;
    for (const [rank, other] of reports.slice(1)) {
      const mismatch = this.difference(counts, other);
      if (mismatch !== null) throw new StepMismatch(`ranks ${firstRank} and ${rank} report different transitions at step ${t} (${mismatch})`);
    }
    const decision = this.controller.step(t, counts);
    const directives = this.hooks.directives(t);
    const ranks = reports.map(([rank]) => rank);
    this.reports = new Map();
    this.next = t + 1;
    this.stopped = directives.stop;
    this.decided.set(t, { decision, counts, dist: this.dist, owing: new Set(ranks), stats: [], samples: new Map() });
    this.dist = undefined;
    for (const rank of ranks) this.owes.set(rank, t);
    const { k, K, R, U } = decision;
    this.hooks.answer(ranks, {
      step: t,
      lr_quant: decision.lr_quant,
      lr_other: decision.lr_other,
      k,
      K,
      R,
      U,
      ...directives,
      state: this.controller.stateDict(),
    });
  }

  private batchSizesWarned = false;

  /** Data-parallel ranks share each batch equally; ranks on different batch sizes are said once (the loss and accuracy mix them). */
  private checkBatchSizes(step: number, samples: Map<number, number>): void {
    if (this.batchSizesWarned || new Set(samples.values()).size <= 1) return;
    this.batchSizesWarned = true;
    const each = [...samples.entries()].sort(([a], [b]) => a - b).map(([rank, n], i) => `rank ${rank}: ${n}${i === 0 ? ' samples' : ''}`);
    this.hooks.warn?.(
      `ranks trained step ${step} on different batch sizes (${each.join(', ')}): data-parallel ranks should share each batch equally ` +
        '(a DistributedSampler with drop_last=True, the same batch size on every rank); said once',
    );
  }

  private difference(a: number[] | null, b: number[] | null): string | null {
    if (a === null || b === null) return a === b ? null : `one has no previous levels, the other has`;
    const i = a.findIndex((count, layer) => count !== b[layer]);
    return i < 0 ? null : `first difference: layer '${this.layers[i]!.name}', ${a[i]} vs ${b[i]}`;
  }

  /** Lines in step order: a step waits for every rank's statistics, and for the steps before it. */
  private writeCompleted(): void {
    for (const [step, decided] of [...this.decided.entries()].sort(([a], [b]) => a - b)) {
      if (decided.owing.size > 0) return;
      this.decided.delete(step);
      this.checkBatchSizes(step, decided.samples);
      const now = Date.now();
      this.hooks.record(stepRecord(decided.decision, decided.counts, combine(decided.stats), this.stepsPerEpoch, this.rate.tick(now), now, decided.dist));
    }
  }
}

/** Ranks disagree about what happened: data-parallel ranks must hold identical weights. */
export class StepMismatch extends Error {}

/** One step's statistics over all ranks: the mean loss, the summed correct and samples. */
function combine(stats: LastStats[]): { loss: number | null; correct: number | null; samples: number | null } {
  const losses = stats.map((s) => s.loss).filter((loss): loss is number => loss !== null);
  const sum = (values: (number | null)[]) => (values.some((v) => v !== null) ? values.reduce<number>((a, v) => a + (v ?? 0), 0) : null);
  return {
    loss: losses.length > 0 ? losses.reduce((a, b) => a + b, 0) / losses.length : null,
    correct: sum(stats.map((s) => s.correct)),
    samples: sum(stats.map((s) => s.samples)),
  };
}
