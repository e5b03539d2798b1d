export { configSchema, scheduleSchema, type RawConfig, type ParsedConfig, type ScheduleConfig } from './config/schema.js';
export { resolveConfig, totalSteps, type ResolvedConfig } from './config/resolve.js';
export { loadConfig, parseConfig, applyOverrides, readConfigFile, ConfigError } from './config/load.js';
export { Schedule } from './schedules/schedule.js';
export { RunningTr } from './schedules/running-tr.js';
export { AdditiveTalr } from './schedules/talr.js';
export { TrController, type StepDecision, type ControllerState } from './schedules/controller.js';
export { train, resume, type RunEvent, type RunOptions, type RunSummary, type RunPlan, type RunInfo } from './run/train.js';
export { MetricsLog, type MetricsRecord, type StepRecord, type EvalRecord } from './run/metrics.js';
export { PROTOCOL_VERSION } from './bridge/protocol.js';
export { WorkerFailure } from './bridge/worker-link.js';
export { TrqatError } from './errors.js';
export { exportRun, type ExportOptions, type ExportResult, type ExportFormat } from './export/export-run.js';
export { type OnnxCheck } from './export/verify-onnx.js';
export {
  serve,
  runScript,
  ClientRunFailure,
  type ServeOptions,
  type ServeHandle,
  type ServeSummary,
  type ServeEvent,
  type ClientRunInfo,
  type ClientRunStatus,
  type ClientInfo,
  type ScriptExit,
  type RunScriptOptions,
  type RunScriptResult,
} from './run/serve.js';
