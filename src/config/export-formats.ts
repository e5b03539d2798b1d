/**
 * The formats `trqat export` writes: the one list. The CLI offers them, and the Python half
 * (`python -m trqat.export --format`) reads them from python/trqat/protocol.schema.json, which
 * `npm run protocol:schema` generates from here (test/bridge/protocol-schema.test.ts fails when it is stale).
 */
export const EXPORT_FORMATS = ['trqat', 'onnx'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];
