/**
 * The trqat library. Casing rule: records shaped like the files on disk (run.json, metrics.jsonl,
 * summary.json, config) keep their snake_case keys; live objects (handles, options, events) are
 * camelCase.
 */
export { configSchema, scheduleSchema, type RawConfig, type ParsedConfig, type ScheduleConfig } from './config/schema.js';
export { resolveConfig, totalSteps, type ResolvedConfig } from './config/resolve.js';
export { loadConfig, parseConfig, applyOverrides, readConfigFile, ConfigError } from './config/load.js';
export { Schedule } from './schedules/schedule.js';
export { RunningTr } from './schedules/running-tr.js';
export { AdditiveTalr } from './schedules/talr.js';
export { TrController, type ControllerState } from './schedules/controller.js';
export { decisionSchema, type StepDecision } from './schedules/decision.js';
export {
  loadPlugins,
  PluginError,
  type PluginContext,
  type PluginFactory,
  type PluginIdentity,
  type PluginOptions,
  type Plugins,
  type TrSchedulePlugin,
  type TalrPlugin,
  type TalrInput,
  type ControllerPlugin,
  type ControllerInput,
  type ControllerOutput,
  type Stateful,
} from './schedules/plugin.js';
export { builtinSchedule, builtinTalr, ComposedController } from './schedules/builtins.js';
export { train, startTraining, resume, startResume, type ResumeOptions, type TrainOptions } from './entry/train.js';
export { serve, runScript, type ServeOptions, type RunScriptOptions, type RunScriptResult } from './entry/serve.js';
export { RunFailure, type RunHandle, type RunOptions } from './run/run.js';
export type { RunEvent, RunInfo, RunPlan, RunStatus, RunSummary, RunKind, RankInfo } from './run/record.js';
export { MetricsLog, type MetricsRecord, type StepRecord, type EvalRecord } from './run/metrics.js';
export type { ProcessExit } from './bridge/launcher.js';
export { PROTOCOL_VERSION } from './bridge/protocol.js';
export { TrqatError } from './errors.js';
export { exportRun, type ExportOptions, type ExportResult } from './export/export-run.js';
export type { ExportFormat } from './config/export-formats.js';
export { type OnnxCheck } from './export/verify-onnx.js';
export { sweep, sweepPlan, summarize as sweepSummary, type SweepOptions, type SweepResult, type SweepEvent, type SweepSummary } from './sweep/sweep.js';
export { type SweepPlan, type PlannedRun } from './sweep/plan.js';
export { type SweepState, type SweepRunState } from './sweep/state.js';
