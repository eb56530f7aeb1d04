"""jaxderain against PyTorch: the same model, weights, L1 loss, Adam and batch, one run.

  python -m benchmarks.vs_torch [--configs=a,b,c,cpu,unet,swinir] [--steps=10]
                                [--memory] [--out=benchmarks/results/vs_torch.json]
  python -m benchmarks.vs_torch --notiming --memory --out=benchmarks/results/vs_torch_memory.json

Needs torch (CPU or CUDA; a benchmark-only dependency, not in requirements.txt).
Configs (float32 unless noted):
  a: ResNet 16 blocks x 64 ch, batch 16, 128x128 (the paper's ResNet and patches)
  b: ResNet 16 x 64, batch 8, 64x64      c: ResNet 8 x 32, batch 8, 64x64
  cpu / unet / swinir: the `cpu` presets of configs/grid.py (the study's rung on this
  machine), batch 8, 64x64.
The JAX side is jaxderain's real train step (background sampling, flips and rain
synthesis inside the jitted step, then forward, L1, backward, Adam); the PyTorch side
(benchmarks/torch_models.py, weights copied from the JAX model, channels_last,
threads = cores) trains on one fixed batch made by that pipeline, so it does less work.
Steps are timed alternately (one JAX step, one PyTorch step, ...), medians of --steps
after 3 warm-up steps. bfloat16 rows: JAX with config.compute_dtype = bfloat16 (float32
master weights), PyTorch under torch.autocast(bfloat16) (CPU: oneDNN, AMX where present).

Each config's record: `config`, per framework the median step time (s) and GFLOP/s, where
FLOPs are counted per convolution as 2*k*k*Cin*Cout*H*W (plus SwinIR's matmuls, see
torch_models.conv_flops) and x3 for a training step; `ratio` = jax / torch time; the
float32 matrix-product rate of each framework measured in this run (4096^3). --memory
adds peak resident memory (RSS, each measured in a fresh process) of training a-c, of
eval on one 480x320 image per architecture (paper presets) and of a 4000x3000 image
evaluated in 256x256 tiles. One JSON object per line on stdout; all of them in --out.
"""

import os
import sys

from jaxderain import cpu_flags  # pylint: disable=g-import-not-at-top

cpu_flags.apply_fast_cpu_flag()

import json  # pylint: disable=g-import-not-at-top
import pathlib
import resource
import statistics
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from benchmarks.common import CONFIGS, LEARNING_RATE, jax_step, report, time_calls
from jaxderain.configs import grid
from jaxderain import models

_CONFIGS = flags.DEFINE_list('configs', ['a', 'b', 'c', 'cpu', 'unet', 'swinir'],
                             'Configs to time (see the module docstring).')
_STEPS = flags.DEFINE_integer('steps', 10, 'Timed steps per framework and config.')
_BF16 = flags.DEFINE_list('bf16', ['b', 'c', 'cpu', 'unet', 'swinir'],
                          'Configs also timed in bfloat16 (both frameworks).')
_MEMORY = flags.DEFINE_bool('memory', False, 'Also measure peak resident memory.')
_TIMING = flags.DEFINE_bool('timing', True, 'Time the configs (--notiming: memory only).')
_CHILD = flags.DEFINE_string('child', '', 'Internal: one memory measurement, e.g. '
                             'train:a, eval:unet or tiled:4000x3000.')
_OUT = flags.DEFINE_string('out', 'benchmarks/results/vs_torch.json', 'JSON output.')

def torch_step(arch, hparams, jax_model, batch, patch, device, bf16=False):
  """A PyTorch step() on the mirror of `jax_model` (same weights), channels_last."""
  import torch  # pylint: disable=g-import-not-at-top
  from benchmarks import torch_models  # pylint: disable=g-import-not-at-top
  net = torch_models.from_jax(torch_models.build(arch, **hparams), jax_model)
  net = net.to(device=device, memory_format=torch.channels_last)
  optimizer = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE, betas=(0.9, 0.99))
  generator = torch.Generator().manual_seed(0)
  clean = torch.rand(batch, 3, patch, patch, generator=generator)
  rainy = (clean + 0.3 * torch.rand(batch, 3, patch, patch, generator=generator)).clamp(0, 1)
  clean, rainy = (x.to(device=device, memory_format=torch.channels_last)
                  for x in (clean, rainy))
  sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)

  def run():
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
      outputs = net(rainy)
    loss = (outputs.float() - clean).abs().mean()
    loss.backward()
    optimizer.step()
    sync()

  return run


WARMUP = 3


def median_times(runs: dict, steps: int) -> dict:
  """Warm up each step(), then time them alternately; name -> median seconds."""
  for run in runs.values():
    for _ in range(WARMUP):
      run()
  times = {name: [] for name in runs}
  for _ in range(steps):
    for name, run in runs.items():
      start = time.perf_counter()
      run()
      times[name].append(time.perf_counter() - start)
  return {name: statistics.median(t) for name, t in times.items()}


def matmul_rates(device, n=4096, repeats=5) -> dict:
  """Float32 n x n x n matrix-product rate (GFLOP/s, best of `repeats`) per framework."""
  import torch  # pylint: disable=g-import-not-at-top
  rates = {}
  x = jax.random.uniform(jax.random.key(0), (n, n))
  product = jax.jit(lambda a: a @ a)
  best = time_calls(lambda: product(x).block_until_ready(), repeats)['min_s']
  rates['jax'] = 2 * n**3 / best / 1e9
  y = torch.rand(n, n, device=device)
  sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
  best = time_calls(lambda: (y @ y, sync()), repeats)['min_s']
  rates['torch'] = 2 * n**3 / best / 1e9
  return rates


def time_config(name: str, steps: int, bf16: bool, device: str, rates: dict) -> dict:
  import torch  # pylint: disable=g-import-not-at-top
  from benchmarks import torch_models  # pylint: disable=g-import-not-at-top
  arch, hparams, batch, patch = CONFIGS[name]
  runs = {}
  model, runs['jax'] = jax_step(arch, hparams, batch, patch)
  runs['torch'] = torch_step(arch, hparams, model, batch, patch, device)
  if bf16:
    _, runs['jax_bf16'] = jax_step(arch, hparams, batch, patch, jnp.bfloat16)
    runs['torch_bf16'] = torch_step(arch, hparams, model, batch, patch, device, bf16=True)
  medians = median_times(runs, steps)
  flops = 3 * torch_models.conv_flops(arch, dict(hparams), batch, patch, patch)
  record = {'benchmark': 'vs_torch', 'config': name, 'arch': arch, 'model': dict(hparams),
            'batch_size': batch, 'patch_size': patch, 'gflop_per_step': flops / 1e9,
            'steps_timed': steps, 'torch': torch.__version__,
            'torch_threads': torch.get_num_threads(),
            'float32_precision': {'jax_default_matmul_precision':
                                      str(jax.config.jax_default_matmul_precision),
                                  'torch_cudnn_allow_tf32': torch.backends.cudnn.allow_tf32,
                                  'torch_matmul_allow_tf32':
                                      torch.backends.cuda.matmul.allow_tf32},
            'matmul_float32_gflops': rates}
  for framework, seconds in medians.items():
    record[f'{framework}_s'] = seconds
    record[f'{framework}_gflops'] = flops / seconds / 1e9
  record['ratio'] = medians['jax'] / medians['torch']
  record['jax_share_of_matmul_rate'] = record['jax_gflops'] / rates['jax']
  if bf16:
    record['ratio_bf16'] = medians['jax_bf16'] / medians['torch_bf16']
    record['jax_bf16_speedup'] = medians['jax'] / medians['jax_bf16']
  return record


def peak_rss_gb() -> float:
  """This process's peak resident memory so far (GB): VmHWM of /proc/self/status on Linux
  (getrusage's ru_maxrss would carry the parent's peak over fork and exec)."""
  status = pathlib.Path('/proc/self/status')
  if status.exists():
    line = next(l for l in status.read_text().splitlines() if l.startswith('VmHWM:'))
    return int(line.split()[1]) * 1024 / 1e9
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def measure_child(spec: str) -> dict:
  """One memory measurement in this (fresh) process: train:CONFIG (3 JAX steps),
  eval:ARCH (the paper preset on one 480x320 image) or tiled:WxH (the paper ResNet over
  a W x H image in 256x256 tiles, as `python -m jaxderain.derain` runs it)."""
  from jaxderain.eval.evaluate import make_predict  # pylint: disable=g-import-not-at-top
  from jaxderain.eval.tiles import predict_tiled  # pylint: disable=g-import-not-at-top
  kind, what = spec.split(':')
  before = peak_rss_gb()
  start = time.perf_counter()
  if kind == 'train':
    arch, hparams, batch, patch = CONFIGS[what]
    _, run = jax_step(arch, hparams, batch, patch)
    for _ in range(3):
      run()
  else:
    arch = what if kind == 'eval' else 'resnet'
    model = models.create(arch, grid.MODELS[arch]['paper'], seed=0)
    from flax import nnx  # pylint: disable=g-import-not-at-top
    graphdef, params, model_state = nnx.split(model, nnx.Param, ...)
    predict = make_predict(graphdef, models.get(arch).image)
    if kind == 'eval':
      image = np.random.default_rng(0).random((1, 320, 480, 3), np.float32)
      np.asarray(predict(params, model_state, image))
    else:
      width, height = map(int, what.split('x'))
      image = np.random.default_rng(0).random((height, width, 3), np.float32)
      predict_tiled(lambda tiles: predict(params, model_state, tiles), image)
  return {'measure': spec, 'peak_rss_gb': peak_rss_gb(), 'rss_after_imports_gb': before,
          'seconds': time.perf_counter() - start}


def memory_records() -> list[dict]:
  specs = ([f'train:{c}' for c in ('a', 'b', 'c')] +
           [f'eval:{arch}' for arch in grid.ARCHS] + ['tiled:4000x3000'])
  records = []
  for spec in specs:
    result = subprocess.run([sys.executable, __file__, f'--child={spec}'],
                            capture_output=True, text=True, check=False)
    if result.returncode:
      records.append({'benchmark': 'vs_torch_memory', 'measure': spec,
                      'error': result.stderr.strip().splitlines()[-1]})
    else:
      records.append({'benchmark': 'vs_torch_memory',
                      **json.loads(result.stdout.strip().splitlines()[-1])})
    print(json.dumps(records[-1]), file=sys.stderr, flush=True)
  return records


def print_table(records: list[dict]) -> None:
  """The timing records as a Markdown table on stderr (stdout keeps one JSON per line)."""
  print('| config | jax s | torch s | ratio | jax GFLOP/s | torch GFLOP/s | jax bf16 speedup |\n'
        '|---|---|---|---|---|---|---|', file=sys.stderr)
  for r in records:
    if r['benchmark'] == 'vs_torch':
      bf16 = f"{r['jax_bf16_speedup']:.2f}x" if 'jax_bf16_speedup' in r else '-'
      print(f"| {r['config']} | {r['jax_s']:.4g} | {r['torch_s']:.4g} | {r['ratio']:.2f} | "
            f"{r['jax_gflops']:.0f} | {r['torch_gflops']:.0f} | {bf16} |", file=sys.stderr)


def main(argv):
  del argv
  if _CHILD.value:
    print(json.dumps(measure_child(_CHILD.value)), flush=True)
    return
  import torch  # pylint: disable=g-import-not-at-top
  device = 'cuda' if jax.default_backend() == 'gpu' and torch.cuda.is_available() else 'cpu'
  if device == 'cpu':
    torch.set_num_threads(os.cpu_count())
  records = []
  rates = matmul_rates(device) if _TIMING.value else {}
  for name in _CONFIGS.value if _TIMING.value else []:
    records.append(time_config(name, _STEPS.value, name in _BF16.value, device, rates))
    print(json.dumps(records[-1]), file=sys.stderr, flush=True)  # progress
  if _MEMORY.value:
    records += memory_records()
  report(records, _OUT.value)
  print_table(records)


if __name__ == '__main__':
  app.run(main)
