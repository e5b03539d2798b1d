import { Packr } from 'msgpackr';

/** Largest frame either side of the bridge accepts (docs/protocol.md). */
export const MAX_MESSAGE_BYTES = 1 << 20;

// variableMapSize: maps of any size (the fast default stops at 65535 keys, which a config's kwargs may pass)
const packr = new Packr({ useRecords: false, variableMapSize: true });

/** MessagePack, as every frame of the bridge is written (bridge/protocol.ts adds the envelope). */
export function pack(value: unknown): Buffer {
  return packr.pack(value);
}
