// A per-layer TALR rule: the paper's additive rule for the network's U, and each layer's U damped
// when that layer keeps flipping late in the run (its own rate above `over` times the target after
// `late` of the run). Stateful: its state is in every checkpoint, so a resume continues exactly.
// Used as `tr.talr: {module: ./damp-late-flippers.mjs, ...}`; README, "Scheduling as code".

export function talr(args, context) {
  const late = args.late ?? 0.5; // from this fraction of the run on
  const over = args.over ?? 2; // a layer flipping more than over * R...
  const damp = args.damp ?? 0.5; // ...has its damping multiplied by this, each step
  const recover = args.recover ?? 1.05; // otherwise it recovers towards 1
  const m = context.momentum;
  const layers = context.layerSizes.length;
  let U = context.config.tr.talr.u0;
  let rates = new Array(layers).fill(0); // each layer's running TR
  let scale = new Array(layers).fill(1);
  return {
    name: 'damp-late-flippers',
    update({ step, total, R, k, K, rates: measured }) {
      if (k === null) return scale.map((s) => U * s);
      U = Math.max(0, U + context.eta * (R - K));
      rates = rates.map((r, i) => m * r + (1 - m) * measured[i]);
      if (step >= late * total) scale = scale.map((s, i) => (rates[i] > over * R ? s * damp : Math.min(1, s * recover)));
      return scale.map((s) => U * s);
    },
    stateDict: () => ({ U, rates, scale }),
    loadStateDict(state) {
      ({ U, rates, scale } = state);
    },
  };
}
