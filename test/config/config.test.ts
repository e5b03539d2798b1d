import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { applyOverrides, ConfigError, loadConfig, parseConfig } from '../../src/config/load.js';
import { r0ForLayers } from '../../src/config/resolve.js';

function configFile(text: string, ext = 'yaml'): string {
  const path = join(mkdtempSync(join(tmpdir(), 'trqat-config-')), `config.${ext}`);
  writeFileSync(path, text);
  return path;
}

function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('config', () => {
  it('fills every default and derives R(0), U(0), eta and the model shape', () => {
    const config = loadConfig(null);
    expect(config.mode).toBe('tr');
    expect(config.optimizer.lr).toBe(0.1);
    expect(config.tr.r0).toBeCloseTo(1e-3 * Math.SQRT2, 15);
    expect(config.tr.talr.u0).toBe(0.1);
    expect(config.tr.talr.eta).toBe(0.1);
    expect(config.model).toMatchObject({ in_channels: 1, num_classes: 10 });
    const adam = loadConfig(null, ['optimizer.name=adam', 'quant.weight_bits=4']);
    expect(adam.optimizer.lr).toBe(1e-3);
    expect(adam.optimizer.weight_decay).toBe(0);
    expect(adam.tr.r0).toBeCloseTo(2e-3, 15);
    const synthetic = loadConfig(null, ['data.name=synthetic', 'data.synthetic.channels=3', 'data.synthetic.num_classes=5']);
    expect(synthetic.model).toMatchObject({ in_channels: 3, num_classes: 5 });
  });

  it('reads YAML and JSON files, and --set overrides win', () => {
    const yaml = loadConfig(configFile('optimizer:\n  name: adamw\ntrain:\n  steps: 50\n'), ['train.steps=70', 'data.augment=false']);
    expect(yaml.optimizer.name).toBe('adamw');
    expect(yaml.train.steps).toBe(70);
    expect(yaml.data.augment).toBe(false);
    const json = loadConfig(configFile('{"quant": {"weight_bits": 1, "act_bits": 1}}', 'json'));
    expect(json.quant).toMatchObject({ weight_bits: 1, act_bits: 1 });
  });

  it('names the field, the bad value and what is allowed', () => {
    const message = errorOf(() => loadConfig(null, ['optimizer.lr=-1', 'mode=fast', 'quant.weight_bits=9']));
    expect(message).toMatch(/optimizer\.lr: .*>0.*got -1/);
    expect(message).toMatch(/mode: .*"tr".*"baseline".*got "fast"/);
    expect(message).toMatch(/quant\.weight_bits: .*<=8.*got 9/);
  });

  it('quant.layer_bits: {pattern: bits}, with errors that name the key and the fix', () => {
    const config = loadConfig(null, ['quant.layer_bits={"layer4.*": 4, "*.conv[12]": 1}', 'train.keep_best=true']);
    expect(config.quant.layer_bits).toEqual({ 'layer4.*': 4, '*.conv[12]': 1 });
    expect(config.train.keep_best).toBe(true);
    expect(loadConfig(null).quant.layer_bits).toEqual({});
    const message = errorOf(() => loadConfig(null, ['quant.layer_bits={"layer 4": 4, "fc": 32, "conv1": 2.5}']));
    expect(message).toMatch(/quant\.layer_bits: key "layer 4" must be an fnmatch pattern of module names .*e\.g\. "layer4\.\*"/);
    expect(message).toMatch(/quant\.layer_bits\.fc: must be 1\.\.8 bits \(keep a layer in full precision with quant\.full_precision instead\); got 32/);
    expect(message).toMatch(/quant\.layer_bits\.conv1: must be a whole number of bits; got 2\.5/);
    expect(errorOf(() => loadConfig(null, ['mode=baseline', 'quant.weight_bits=32', 'quant.layer_bits={"fc": 4}']))).toMatch(
      /quant\.layer_bits sets bits of quantized layers, but quant\.weight_bits=32 quantizes none/,
    );
  });

  it('R(0) of mixed bit-widths: the size-weighted mean of lambda * sqrt(b); one bit-width or an explicit r0 is kept', () => {
    const config = loadConfig(null, ['tr.lambda=0.01']);
    const mixed = [
      { numel: 100, weight_bits: 1 },
      { numel: 300, weight_bits: 4 },
    ];
    expect(r0ForLayers(config, mixed)).toBeCloseTo((0.01 * (100 * 1 + 300 * 2)) / 400, 15);
    expect(r0ForLayers(config, [{ numel: 5, weight_bits: 2 }])).toBe(config.tr.r0); // the config's own bits
    expect(r0ForLayers(config, [{ numel: 5, weight_bits: 4 }, { numel: 7, weight_bits: 4 }])).toBe(0.01 * 2);
    expect(r0ForLayers(loadConfig(null, ['tr.r0=0.003']), mixed)).toBe(0.003);
  });

  it('lists the allowed keys when a key is unknown (typos do not pass silently)', () => {
    const message = errorOf(() => parseConfig({ optimzer: { lr: 0.1 }, tr: { lamda: 0.1 } }));
    expect(message).toMatch(/optimzer: unknown setting; did you mean optimizer\? \(allowed here: .*optimizer/);
    expect(message).toMatch(/tr\.lamda: unknown setting; did you mean tr\.lambda\? \(allowed here: preset, lambda, r0, schedule, momentum, k0, scope, auto, talr, settle_fraction, warn_tracking_error\)/);
  });

  it('explains malformed files and overrides', () => {
    expect(errorOf(() => loadConfig(configFile('optimizer: [1, 2')))).toMatch(/not valid YAML\/JSON/);
    expect(errorOf(() => loadConfig(configFile('- a\n- b\n')))).toMatch(/must hold a mapping of settings, got a list/);
    expect(errorOf(() => loadConfig('/nonexistent/config.yaml'))).toMatch(/^config file \/nonexistent\/config.yaml does not exist/);
    expect(errorOf(() => loadConfig(mkdtempSync(join(tmpdir(), 'trqat-dir-'))))).toMatch(/cannot read config file .*EISDIR/); // other causes: as the system says
    expect(errorOf(() => applyOverrides({}, ['optimizer.lr']))).toMatch(/expected path=value/);
    expect(errorOf(() => applyOverrides({ seed: 1 }, ['seed.x=2']))).toMatch(/"seed" is not a section/);
    expect(errorOf(() => loadConfig(null, ['tr.momentum=1']))).toMatch(/tr\.momentum: .*got 1/);
  });
});

describe('config limits and endpoints', () => {
  it('a 56,790-key config just under 1 MiB is refused by its key count within 2 s; one of 10,000 keys is read', () => {
    const kwargs = (n: number) => `model:\n  kwargs:\n${Array.from({ length: n }, (_, i) => `    k${i}: ${i}`).join('\n')}\n`;
    for (const text of [kwargs(56_790), JSON.stringify({ model: { kwargs: Object.fromEntries(Array.from({ length: 56_790 }, (_, i) => [`k${i}`, i])) } })]) {
      expect(text.length).toBeLessThan(1 << 20);
      const path = configFile(text);
      const started = performance.now();
      expect(errorOf(() => loadConfig(path))).toMatch(/holds about 56,79\d keys; the limit is 10,000 \(a config holds settings/);
      expect(performance.now() - started).toBeLessThan(2000);
    }
    expect(Object.keys(loadConfig(configFile(kwargs(9_990))).model.kwargs)).toHaveLength(9_990);
    // Colons in values (URLs, factories, times) are not keys.
    const values = `model:\n  kwargs:\n${Array.from({ length: 5_000 }, (_, i) => `    u${i}: "http://x/${i}:a:b:c"`).join('\n')}\n`;
    expect(Object.keys(loadConfig(configFile(values)).model.kwargs)).toHaveLength(5_000);
  });

  it('an endpoint this machine cannot listen on is refused at load, so trqat config and trqat train agree', () => {
    expect(errorOf(() => loadConfig(null, ['bridge.endpoint=tcp://8.8.8.8:5555']))).toMatch(
      /^bridge\.endpoint tcp:\/\/8\.8\.8\.8:5555: 8\.8\.8\.8 is not an address of this machine \(its addresses: .*127\.0\.0\.1.*\); use tcp:\/\/127\.0\.0\.1:\*/,
    );
    expect(errorOf(() => loadConfig(null, ['bridge.endpoint=tcp://127.0.0.1:70000']))).toMatch(/port 70000 is not a port \(1-65535, or \* for a free one\)/);
    for (const endpoint of ['tcp://127.0.0.1:*', 'tcp://0.0.0.0:5555', 'tcp://*:5555', 'tcp://localhost:5555', 'tcp://[::1]:5555', 'ipc:///tmp/trqat.sock']) {
      expect(loadConfig(null, [`bridge.endpoint=${endpoint}`]).bridge.endpoint).toBe(endpoint);
    }
  });
});

describe('config for the full method', () => {
  it('derives shapes and defaults per dataset and optimizer', () => {
    const cifar = loadConfig(null, ['data.name=cifar100', 'data.root=/data/cifar', 'optimizer.name=NAdam']);
    expect(cifar.model).toMatchObject({ in_channels: 3, num_classes: 100, image_size: 32 });
    expect(cifar.optimizer).toMatchObject({ name: 'nadam', lr: 1e-3, weight_decay: 0, quantized_weight_decay: 0 });
    const imagenet = loadConfig(null, ['data.name=imagenet', 'data.root=/data/imagenet', 'data.image_size=160', 'model.name=resnet18']);
    expect(imagenet.model).toMatchObject({ in_channels: 3, num_classes: 1000, image_size: 160 });
    expect(imagenet.train.distill.teacher_model).toBe('resnet18');
    const fp = loadConfig(null, ['quant.weight_bits=32', 'quant.act_bits=32', 'mode=baseline']);
    expect(fp.quant.weight_bits).toBe(32);
    expect(loadConfig(null, ['optimizer.weight_decay=0.01', 'optimizer.quantized_weight_decay=0']).optimizer.quantized_weight_decay).toBe(0);
  });

  it('refuses combinations that cannot run, saying how to fix them', () => {
    expect(errorOf(() => loadConfig(null, ['quant.weight_bits=32']))).toMatch(/no quantized weights to schedule: use mode=baseline/);
    expect(errorOf(() => loadConfig(null, ['data.name=cifar10']))).toMatch(/data\.root is required for cifar10: .*cifar-10-python\.tar\.gz/);
    expect(errorOf(() => loadConfig(null, ['model.name=vgg16']))).toMatch(/model\.name: .*"resnet20".*"deit_small".*got "vgg16"/);
    expect(errorOf(() => loadConfig(null, ['tr.talr.rule=pid']))).toMatch(/tr\.talr\.rule: .*"additive".*got "pid"/);
    expect(errorOf(() => loadConfig(null, ['optimizer.name=my optimizer']))).toMatch(/optimizer\.name: use an optimizer name/);
    expect(errorOf(() => loadConfig(null, ['worker.heartbeat_interval_ms=10000']))).toMatch(/heartbeat_timeout_ms \(5000\) must be at least twice worker\.heartbeat_interval_ms \(10000\)/);
    expect(errorOf(() => loadConfig(null, ['worker.command_timeout_ms=1e10']))).toMatch(/worker\.command_timeout_ms: .*<=2147483647/);
  });

  it('data parallelism and endpoints: the batch splits evenly, nothing reachable runs without keys, old amp values still read', () => {
    expect(errorOf(() => loadConfig(null, ['worker.nproc_per_node=3']))).toMatch(
      /data\.batch_size \(128\) is the batch of one optimizer step over all ranks, split into 3 rank\(s\) x 1 micro-batch\(es\): make it a multiple of 3/,
    );
    expect(errorOf(() => loadConfig(null, ['train.accumulate_steps=3']))).toMatch(/make it a multiple of 3/);
    expect(loadConfig(null, ['worker.nproc_per_node=4', 'train.accumulate_steps=2']).worker.nproc_per_node).toBe(4);
    expect(errorOf(() => loadConfig(null, ['bridge.endpoint=tcp://0.0.0.0:5555', 'bridge.curve=off']))).toMatch(
      /bridge\.endpoint tcp:\/\/0\.0\.0\.0:5555 can be reached from other machines.*use bridge\.curve=auto/,
    );
    expect(loadConfig(null, ['bridge.endpoint=ipc:///tmp/x.sock', 'bridge.curve=off']).bridge.curve).toBe('off');
    expect(loadConfig(null, ['worker.amp=true']).worker.amp).toBe('fp16');
    expect(loadConfig(null, ['worker.amp=false']).worker.amp).toBe('off');
    expect(errorOf(() => loadConfig(null, ['worker.amp=fp8']))).toMatch(/worker\.amp: .*"off".*"bf16".*"fp16"/);
  });
});

describe('tr.preset', () => {
  it('released fills the released code\'s values wherever the config leaves them unset', () => {
    const released = loadConfig(null, ['tr.preset=released']);
    expect(released.tr).toMatchObject({ r0: 5e-3, k0: 5e-3, scope: 'layer', momentum: 0.99, schedule: { interval: 'epoch' } });
    expect(released.tr.talr).toMatchObject({ rule: 'momentum_multiplicative', momentum: 0.99, max_ratio: null, eps: 1e-8, u0: 0.1 });
    expect(released.quant).toMatchObject({ weight_scale_init: 'std', act_scale_init: 'std', lsq_grad_scale: false });
    expect(released.optimizer).toMatchObject({ weight_decay: 1e-4, quantized_weight_decay: 1e-4, scale_lr: 0.01, scale_momentum: 0, no_decay_momentum: 0 });
    expect(released.lr_schedule.interval).toBe('epoch');
    expect(released.data.batch_size).toBe(256);
    // every item stays settable on its own, and the paper's text stays the default
    const mixed = loadConfig(null, ['tr.preset=released', 'tr.k0=0', 'optimizer.weight_decay=5e-4', 'tr.schedule.interval=step', 'tr.talr.max_ratio=2']);
    expect(mixed.tr).toMatchObject({ k0: 0, schedule: { interval: 'step', name: 'cosine' }, talr: { max_ratio: 2, eps: 1e-8 } });
    expect(mixed.optimizer.weight_decay).toBe(5e-4);
    const paper = loadConfig(null);
    expect(paper.tr).toMatchObject({ preset: 'paper', k0: 0, scope: 'network', talr: { rule: 'additive', max_ratio: 2, eps: 0 } });
    expect(paper.quant.weight_scale_init).toBe('lsq');
  });

  it('refuses an unknown preset and an unclamped ratio that could divide by zero', () => {
    expect(errorOf(() => loadConfig(null, ['tr.preset=authors']))).toMatch(/tr\.preset: .*"paper".*"released".*got "authors"/);
    expect(errorOf(() => loadConfig(null, ['tr.talr.rule=multiplicative', 'tr.talr.max_ratio=null']))).toMatch(/set tr\.talr\.eps > 0/);
  });
});
