// A step-wise target-TR schedule: R(0) until the first milestone, then `factor` times less at each
// milestone (fractions of the run). Used as `tr.schedule: {module: ./step-schedule.mjs, ...}`;
// README, "Scheduling as code".

/** @param {{milestones?: number[], factor?: number}} args the config's keys beside `module` */
export function schedule(args, context) {
  const milestones = args.milestones ?? [0.5, 0.75];
  const factor = args.factor ?? 0.1;
  if (!milestones.every((m) => m > 0 && m < 1)) throw new Error(`milestones must be fractions of the run in (0, 1), got ${milestones}`);
  const r0 = context.config.tr.r0;
  return {
    name: 'step-schedule',
    target(step, total) {
      const passed = milestones.filter((m) => step >= m * total).length;
      return r0 * factor ** passed;
    },
  };
}
