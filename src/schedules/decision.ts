import { z } from 'zod';

/**
 * What the controller decided for one step: the one declaration of the decision record. The
 * controller returns it (its type is inferred here), the `lr` message carries its LRs and rates
 * (src/bridge/protocol.ts) and every metrics line holds it (src/run/metrics.ts). Import-free but
 * for zod, so that the bridge may depend on it.
 */
export const decisionSchema = z.object({
  step: z.number().int().min(0),
  /** Measured TR of this step (transitions caused by the previous update), null on a fresh run's first step. */
  k: z.number().nullable(),
  /** Network-wide running TR (also under the per-layer scope, for comparison with R). */
  K: z.number(),
  /** Target TR; null in baseline mode. */
  R: z.number().nullable(),
  /** TALR; null in baseline mode. With one U per layer: the mean of the layers' U weighted by size. */
  U: z.number().nullable(),
  /** One LR for all quantized layers, or one per layer (per-layer scope, or a per-layer TALR rule). */
  lr_quant: z.union([z.number(), z.array(z.number())]),
  lr_other: z.number(),
  /** Per-layer scope only: each layer's running TR. */
  K_layers: z.array(z.number()).optional(),
  /** One U per layer: each layer's TALR. */
  U_layers: z.array(z.number()).optional(),
});

export type StepDecision = z.infer<typeof decisionSchema>;

/** The decided fields the `lr` message carries to every rank. */
export const sentDecisionSchema = decisionSchema.pick({ step: true, lr_quant: true, lr_other: true, k: true, K: true, R: true, U: true });

/** A decision with no unknown fields (a plug-in's typo is an error, not a silently dropped key). */
const strictDecision = decisionSchema.strict();

/**
 * Why a decision cannot be sent, or null: its shape (the schema above), then every number must be
 * finite and not negative, and a list must have one entry per quantized layer. The message names
 * the field (`U_layers[3] is NaN`).
 */
export function decisionProblem(decision: unknown, layers: number): string | null {
  if (decision !== null && typeof decision === 'object') {
    for (const [field, value] of Object.entries(decision)) {
      const problem = valueProblem(field, value, layers);
      if (problem !== null) return problem;
    }
  }
  const parsed = strictDecision.safeParse(decision);
  if (parsed.success) return null;
  const issue = parsed.error.issues[0]!;
  return `${issue.path.length > 0 ? issue.path.join('.') : 'the decision'}: ${issue.message}`;
}

/** Why a decided value (a number, or a list of one per layer) cannot be sent, or null; other types are left to the schema. */
export function valueProblem(field: string, value: unknown, layers: number): string | null {
  if (Array.isArray(value) && value.length !== layers) return `${field} has ${value.length} entries for ${layers} quantized layers`;
  const values: unknown[] = Array.isArray(value) ? value : [value];
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (typeof v !== 'number') continue;
    const name = Array.isArray(value) ? `${field}[${i}]` : field;
    if (!Number.isFinite(v)) return `${name} is ${v}`;
    if (v < 0) return `${name} is negative (${v})`;
  }
  return null;
}
