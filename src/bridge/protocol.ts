import { Unpackr } from 'msgpackr';
import { z } from 'zod';
import { MAX_MESSAGE_BYTES, pack } from '../wire.js';
import { sentDecisionSchema } from '../schedules/decision.js';

/** Version of docs/protocol.md this controller speaks. */
export const PROTOCOL_VERSION = 2;
export { MAX_MESSAGE_BYTES };

const count = z.number().int().min(0);
/**
 * A loss may be NaN or infinite when training diverges: accepted here, reported by the run. (JSON
 * Schema has no such number: protocol-schema.ts writes it as a number with `x-non-finite: true`.)
 */
export const anyNumber = z.custom<number>((value) => typeof value === 'number', 'expected a number');
const lossValue = anyNumber.nullable();

export const envelopeSchema = z.strictObject({
  v: z.number().int(),
  type: z.string().min(1),
  sid: z.string().min(1).max(64),
  seq: z.number().int().min(0),
  body: z.record(z.string(), z.unknown()),
});
export type Envelope = z.infer<typeof envelopeSchema>;

export const layerSchema = z.object({
  name: z.string(),
  kind: z.string(),
  numel: z.number().int().positive(),
  weight_bits: z.number().int(),
  act_bits: z.number().int(),
});
export type LayerInfo = z.infer<typeof layerSchema>;

/** The controller's schedule state ({K, U, last_step}): a client keeps it in its own checkpoints. */
export const controllerStateSchema = z.looseObject({
  K: z.number().min(0).max(1),
  U: z.number().min(0),
  last_step: z.number().int().min(-1),
});

/** The statistics of a session's last completed step, carried by the next message it sends. */
export const lastStatsSchema = z.object({ loss: lossValue, correct: count.nullable(), samples: count.nullable() });
export type LastStats = z.infer<typeof lastStatsSchema>;

/** Bins of the distance histogram: DISTANCE_BINS - 1 bins of DISTANCE_BIN_WIDTH levels over [0, 0.5), then one for >= 0.5. */
export const DISTANCE_BINS = 11;
export const DISTANCE_BIN_WIDTH = 0.05;

/**
 * How far the quantized weights are from their nearest transition point (where their integer level
 * would change), in quantization steps: per layer, a histogram and the mean. Sent with some steps
 * (train.diagnostics_every) and logged as is in the step's metrics line.
 */
export const transitionDistanceSchema = z.object({
  hist: z.array(z.array(count).length(DISTANCE_BINS)),
  mean: z.array(z.number().min(0)),
});
export type TransitionDistance = z.infer<typeof transitionDistanceSchema>;

/** hello.role: a managed worker (started by `trqat train` or a launcher) or a client (a user's own training script). */
export const peerRoles = ['worker', 'client'] as const;
export type PeerRole = (typeof peerRoles)[number];

/** Bodies of the messages a session (worker or client) may send, by type. */
export const workerBodies = {
  hello: z.object({
    protocol: z.number().int(),
    role: z.enum(peerRoles),
    rank: z.number().int().min(0),
    world_size: z.number().int().positive(),
    local_rank: z.number().int().min(0).optional(),
    pid: z.number().int(),
    hostname: z.string(),
    device: z.string(),
    device_name: z.string(),
    torch_version: z.string(),
    python_version: z.string(),
    trqat_version: z.string(),
    /** The run's secret (TRQAT_SECRET or the auth file): only the run's own processes know it. */
    secret: z.string().max(256),
  }),
  /** A session's second socket (its heartbeat thread) joins the session. */
  attach: z.object({ secret: z.string().max(256) }),
  ready: z.object({
    device: z.string(),
    layers: z.array(layerSchema),
    params: z.object({ quantized: count, other: count }),
    train_size: count,
    test_size: count,
    steps_per_epoch: z.number().int().positive(),
    start_step: count,
    /** Clients: the run length when the config's train.steps is null. */
    total_steps: z.number().int().positive().nullable().optional(),
    /** Clients: the controller state to continue from (a run resumed from the user's checkpoint). */
    controller_state: controllerStateSchema.nullable().optional(),
  }),
  step: z.object({
    step: count,
    counts: z.array(count).nullable(),
    last: lastStatsSchema.nullable(),
    /** Only on steps where train.diagnostics_every is due: the distance to the nearest transition point. */
    dist: transitionDistanceSchema.optional(),
  }),
  evaluated: z.object({ top1: z.number(), loss: lossValue.unwrap(), samples: count, seconds: z.number(), last: lastStatsSchema.nullable().optional() }),
  saved: z.object({ path: z.string(), bytes: count, last: lastStatsSchema.nullable().optional() }),
  /** The end of a session: the stats of its last step, and the error that ended a client's script. */
  bye: z.object({ last: lastStatsSchema.nullable().optional(), error: z.string().nullable().optional() }),
  heartbeat: z.object({}),
  /** How far a long, otherwise silent phase is ("data": loading the dataset, "eval": evaluating); total null when unknown. */
  progress: z.object({ phase: z.string().min(1).max(32), done: count, total: count.nullable() }),
  /**
   * `kind: "config"`: the config cannot work (a missing dataset, an unknown optimizer): exit 2, not a crash.
   * `kind: "checkpoint"`: the checkpoint to resume from cannot be used (unreadable, crafted): the controller falls back to an earlier one.
   */
  error: z.object({ message: z.string(), traceback: z.string().optional(), kind: z.enum(['config', 'runtime', 'checkpoint']).optional() }),
} as const;

export type WorkerMessageType = keyof typeof workerBodies;
export type WorkerBody<T extends WorkerMessageType> = z.infer<(typeof workerBodies)[T]>;
export interface WorkerMessage<T extends WorkerMessageType = WorkerMessageType> {
  type: T;
  sid: string;
  seq: number;
  body: WorkerBody<T>;
}

/**
 * The LRs of one step, sent to every rank, with the directives a managed worker follows: the
 * decided fields of src/schedules/decision.ts (`lr_quant` one LR for every quantized layer, or one
 * per layer in `layers` order; `k`, `K`, `R`, `U` for the script's own logger).
 */
const lrBody = sentDecisionSchema.extend({
  /** This was the last step: the session ends (bye) after following the other directives. */
  stop: z.boolean(),
  /** Evaluate after this step's update (managed workers; rank 0 reports). */
  eval: z.boolean(),
  /** Save the checkpoint of the state after this step into this folder (managed workers; rank 0 writes). */
  save: z.string().nullable(),
  /** The controller's state after this step (clients keep it in their checkpoints). */
  state: controllerStateSchema,
});

/**
 * Bodies the controller sends, by type. The controller builds them (typed by these schemas) and
 * does not parse them again; test/bridge/protocol-contract.test.ts checks them against the shared examples
 * that python/trqat/protocol.py must accept too.
 */
export const controllerBodies = {
  welcome: z.object({ config: z.record(z.string(), z.unknown()), resume: z.string().nullable() }),
  reject: z.object({ reason: z.string() }),
  /** The answer to a ready: the run's plan. */
  plan: z.object({ total_steps: z.number().int().positive(), steps_per_epoch: z.number().int().positive(), start_step: count }),
  lr: lrBody,
  /** The run ended or failed: a worker exits, a client raises. Sent to every socket of every session. */
  abort: z.object({ reason: z.string() }),
  heartbeat_ack: z.object({}),
  error: z.object({ message: z.string() }),
  /** The answer to a bye. */
  bye: z.object({}),
} as const;

export type ControllerMessageType = keyof typeof controllerBodies;
export type ControllerBodies = { [T in ControllerMessageType]: z.input<(typeof controllerBodies)[T]> };
export type LrBody = ControllerBodies['lr'];
export type ControllerStateBody = z.infer<typeof controllerStateSchema>;

export class ProtocolError extends Error {
  constructor(
    message: string,
    /** The sender's session id when the envelope was readable, so the error can be answered. */
    readonly sid: string | null = null,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** A peer speaking another protocol version: refused at the handshake with both versions named. */
export class VersionMismatchError extends ProtocolError {
  constructor(
    message: string,
    sid: string,
    /** The pid the hello announced, so a controller can tell its own worker from a stray peer. */
    readonly pid: number | null,
  ) {
    super(message, sid);
  }
}

const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

export function encode<T extends ControllerMessageType>(type: T, sid: string, seq: number, body: ControllerBodies[T]): Buffer {
  return pack({ v: PROTOCOL_VERSION, type, sid, seq, body });
}

/** Decodes and validates one frame from a worker; throws ProtocolError saying what is wrong. */
export function decodeWorkerMessage(frame: Buffer): WorkerMessage {
  if (frame.length > MAX_MESSAGE_BYTES) throw new ProtocolError(`message of ${frame.length} bytes exceeds the ${MAX_MESSAGE_BYTES}-byte limit`);
  let decoded: unknown;
  try {
    decoded = unpackr.unpack(frame);
  } catch (error) {
    throw new ProtocolError(`message is not valid MessagePack (${(error as Error).message})`);
  }
  const envelope = envelopeSchema.safeParse(decoded);
  if (!envelope.success) throw new ProtocolError(`bad envelope: ${formatZodIssues(envelope.error)}`);
  const { v, type, sid, seq, body } = envelope.data;
  const bodySchema = (workerBodies as Record<string, z.ZodType>)[type];
  if (!bodySchema) throw new ProtocolError(`unknown message type "${type}" (known: ${Object.keys(workerBodies).join(', ')})`, sid);
  if (type === 'hello' && (v !== PROTOCOL_VERSION || body['protocol'] !== PROTOCOL_VERSION)) {
    // Refused at the handshake, by name; after it, another version is just a malformed message.
    const theirs = v !== PROTOCOL_VERSION ? v : String(body['protocol']);
    const peer = body['role'] === 'client' ? 'client' : 'worker';
    throw new VersionMismatchError(
      `protocol version mismatch: the ${peer} speaks version ${theirs}, this controller speaks version ${PROTOCOL_VERSION}; ` +
        'install matching versions of the trqat npm package and the trqat Python package',
      sid,
      typeof body['pid'] === 'number' ? body['pid'] : null,
    );
  }
  if (v !== PROTOCOL_VERSION) {
    throw new ProtocolError(`message "${type}" uses protocol version ${v}; this controller speaks version ${PROTOCOL_VERSION}`, sid);
  }
  const parsedBody = bodySchema.safeParse(body);
  if (!parsedBody.success) throw new ProtocolError(`bad "${type}" message: ${formatZodIssues(parsedBody.error)}`, sid);
  return { type: type as WorkerMessageType, sid, seq, body: parsedBody.data as WorkerBody<WorkerMessageType> };
}

function formatZodIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : 'message'}: ${issue.message}`)
    .join('; ');
}
