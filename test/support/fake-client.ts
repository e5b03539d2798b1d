// A client session written against docs/protocol.md alone (no Python): two DEALER sockets, the
// handshake, steps with counts the test chooses, heartbeats. Fast enough to drive a real controller
// (serve()) through thousands of frames in a test.
import { Packr, Unpackr } from 'msgpackr';
import { Dealer } from 'zeromq';
import { PROTOCOL_VERSION, type LayerInfo } from '../../src/bridge/protocol.js';

const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ mapsAsObjects: true });

export interface Reply {
  type: string;
  sid: string;
  body: Record<string, unknown>;
}

export const pack = (type: string, sid: string, seq: number, body: unknown): Buffer => packr.pack({ v: PROTOCOL_VERSION, type, sid, seq, body });
export const unpack = (frame: Buffer): Reply => unpackr.unpack(frame) as Reply;

export function helloBody(secret: string, rank = 0, worldSize = 1): Record<string, unknown> {
  return {
    protocol: PROTOCOL_VERSION, role: 'client', rank, world_size: worldSize, pid: process.pid, hostname: 'test', device: 'cpu',
    device_name: 'cpu', torch_version: '2', python_version: '3', trqat_version: '0.1.0', secret,
  };
}

/** Three small quantized layers. */
export const LAYERS: LayerInfo[] = [
  { name: 'a', kind: 'linear', numel: 400, weight_bits: 2, act_bits: 2 },
  { name: 'b', kind: 'linear', numel: 1000, weight_bits: 2, act_bits: 2 },
  { name: 'c', kind: 'linear', numel: 40, weight_bits: 2, act_bits: 2 },
];

/** The counts a deterministic "model" reports at step t. */
export const countsAt = (t: number): number[] | null => (t === 0 ? null : LAYERS.map((layer, i) => (t * 7 + i * 13) % Math.min(60, layer.numel)));

export class FakeClient {
  readonly sid = Math.random().toString(16).slice(2, 18).padEnd(16, '0');
  private readonly main = new Dealer({ linger: 0, receiveTimeout: 10_000 });
  private readonly beat = new Dealer({ linger: 0 });
  private seq = 0;
  private beating: NodeJS.Timeout | null = null;

  constructor(
    readonly endpoint: string,
    private readonly secret: string,
  ) {
    this.main.connect(endpoint);
  }

  /** A message that gets no answer (evaluated, progress). */
  async send(type: string, body: unknown): Promise<void> {
    await this.main.send(pack(type, this.sid, this.seq++, body));
  }

  async request(type: string, body: unknown): Promise<Reply> {
    await this.send(type, body);
    const [frame] = await this.main.receive();
    return unpack(frame!);
  }

  /** hello, attach and heartbeats every `intervalMs`, ready: returns the plan. */
  async join(totalSteps: number, intervalMs = 100): Promise<Reply> {
    const welcome = await this.request('hello', helloBody(this.secret));
    if (welcome.type !== 'welcome') throw new Error(`not welcomed: ${JSON.stringify(welcome.body)}`);
    this.beat.connect(this.endpoint);
    await this.beat.send(pack('attach', this.sid, this.seq++, { secret: this.secret }));
    this.beating = setInterval(() => void this.beat.send(pack('heartbeat', this.sid, this.seq++, {})).catch(() => undefined), intervalMs);
    return this.request('ready', {
      device: 'cpu', layers: LAYERS, params: { quantized: 1440, other: 10 }, train_size: 64, test_size: 16, steps_per_epoch: 4,
      start_step: 0, total_steps: totalSteps,
    });
  }

  /** One training step: the counts of step t, the loss of step t-1; returns the lr reply. */
  step(t: number): Promise<Reply> {
    return this.request('step', { step: t, counts: countsAt(t), last: t === 0 ? null : { loss: 2 / t, correct: t, samples: 16 } });
  }

  /** Stops the heartbeats (a hung process), leaving the sockets open. */
  hang(): void {
    if (this.beating) clearInterval(this.beating);
    this.beating = null;
  }

  close(): void {
    this.hang();
    this.main.close();
    this.beat.close();
  }
}
