import type { ResolvedConfig } from '../config/resolve.js';
import type { LayerInfo, WorkerBody } from '../bridge/protocol.js';
import type { Session } from '../bridge/sessions.js';
import type { RunPolicy } from './policy.js';

/** What a hello is checked against beside the admission's own state. */
export interface HelloContext {
  ended: boolean;
  stopping: boolean;
  /** The sessions connected now. */
  active: readonly Session[];
}

/**
 * Who may join a run: the right role, one session per rank below one world size, no rank twice,
 * and (from the second ready on) the same model and start as the first rank's.
 */
export class Admission {
  /** Fixed by the first hello admitted. */
  worldSize: number | null = null;
  /** Ranks that said bye: they may not come back to this run. */
  readonly closedRanks = new Set<number>();

  constructor(
    private readonly policy: RunPolicy,
    private readonly config: () => ResolvedConfig,
  ) {}

  /** null admits the hello (and fixes the world size); a string is the refusal. */
  hello(hello: WorkerBody<'hello'>, context: HelloContext): string | null {
    if (hello.role !== this.policy.role) return this.policy.wrongRole;
    if (context.ended) return 'this run has ended';
    if (context.stopping) return 'this run is stopping';
    const expected = this.worldSize ?? this.policy.expectedWorldSize(this.config());
    if (expected !== null && hello.world_size !== expected) {
      return `world size ${hello.world_size} does not match the run's world size ${expected}`;
    }
    if (hello.rank >= hello.world_size) return `rank ${hello.rank} is not below the world size ${hello.world_size}`;
    const twin = context.active.find((s) => s.rank === hello.rank);
    if (twin) return `rank ${hello.rank} is already connected (pid ${twin.hello.pid} on ${twin.hello.hostname}); every rank connects once`;
    if (this.closedRanks.has(hello.rank)) return `rank ${hello.rank} has already said bye to this run`;
    this.worldSize = hello.world_size;
    return null;
  }

  bye(rank: number): void {
    this.closedRanks.add(rank);
  }

  hasSaidBye(rank: number): boolean {
    return this.closedRanks.has(rank);
  }

  /** Every rank of the world said bye (a run nobody joined counts one). */
  allSaidBye(): boolean {
    return this.closedRanks.size >= (this.worldSize ?? 1);
  }

  /** An automatic restart: the new processes say hello again. */
  restart(): void {
    this.closedRanks.clear();
  }
}

/** A further rank's ready must describe the same model, start and plan as the first's; returns the refusal. */
export function joinRefusal(first: { rank: number; body: WorkerBody<'ready'> }, rank: number, body: WorkerBody<'ready'>): string | null {
  const sizes = (layers: readonly LayerInfo[]) => layers.map((l) => l.numel).join(',');
  if (sizes(body.layers) !== sizes(first.body.layers)) {
    return `this rank's quantized layers (${body.layers.length}) differ from rank ${first.rank}'s (${first.body.layers.length}): every rank must train the same model`;
  }
  if (body.start_step !== first.body.start_step) {
    return `this rank starts at step ${body.start_step}, the run started at step ${first.body.start_step}: every rank must start at the same step`;
  }
  for (const key of ['total_steps', 'steps_per_epoch'] as const) {
    const [mine, theirs] = [body[key] ?? null, first.body[key] ?? null];
    if (mine !== theirs) {
      return (
        `rank ${rank} asks for ${key}=${mine}, rank ${first.rank} for ${key}=${theirs}: every rank must run the same plan ` +
        `(give every rank the same ${key}: the same dataset, batch size and world size, or the same value to trqat.client.Client)`
      );
    }
  }
  return null;
}
