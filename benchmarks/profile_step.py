"""Where a jaxderain train step spends its time on this machine, and the convolution wall.

  python -m benchmarks.profile_step [--configs=c,b] [--out=benchmarks/results/profile_step.json]

Per config of benchmarks/vs_torch.py, two records:
  * `op_time`: a jax.profiler trace of --steps train steps, op time summed by kind of XLA
    operation (ynn_fusion: YNNPACK-run fusions, which hold the convolutions and their
    elementwise neighbours; transpose_copy_fusion: layout copies; ...), ms per step and
    share. Op time sums over threads, so it can exceed the step's wall time.
  * `conv`: one 3x3 convolution of the config's inner layer (batch, H, W, C -> C), its
    forward, input gradient (dx) and weight gradient (dw) timed alone in JAX (XLA) and in
    PyTorch channels_last (oneDNN), ms and GFLOP/s (2*9*C*C*H*W*batch each).
"""

import os

from jaxderain import cpu_flags  # pylint: disable=g-import-not-at-top

cpu_flags.apply_fast_cpu_flag()

import collections  # pylint: disable=g-import-not-at-top
import glob
import re
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags


from benchmarks.common import CONFIGS, jax_step, report, time_calls

_CONFIGS = flags.DEFINE_list('configs', ['c', 'b'], 'ResNet configs of vs_torch.py.')
_STEPS = flags.DEFINE_integer('steps', 5, 'Profiled (and per-conv timed) steps.')
_OUT = flags.DEFINE_string('out', 'benchmarks/results/profile_step.json', 'JSON output.')


def op_time(name: str, steps: int) -> dict:
  """Op time per step by kind of XLA operation, from a profiler trace."""
  arch, hparams, batch, patch = CONFIGS[name]
  _, run = jax_step(arch, hparams, batch, patch)
  for _ in range(3):
    run()
  with tempfile.TemporaryDirectory() as folder:
    jax.profiler.start_trace(folder)
    start = time.perf_counter()
    for _ in range(steps):
      run()
    wall = (time.perf_counter() - start) / steps
    jax.profiler.stop_trace()
    trace = jax.profiler.ProfileData.from_file(
        glob.glob(f'{folder}/**/*.xplane.pb', recursive=True)[0])
  by_kind = collections.Counter()
  for plane in trace.planes:
    for line in plane.lines:
      if not line.name.startswith('tf_XLAEigen'):  # XLA's compute threads
        continue
      for event in line.events:
        if not event.name.startswith(('ThunkExecutor', 'SlinkyThreadPool')):
          by_kind[re.sub(r'[._]\d+$', '', event.name)] += event.duration_ns / 1e6 / steps
  total = sum(by_kind.values())
  return {'benchmark': 'profile_step', 'config': name, 'record': 'op_time',
          'wall_ms_per_step': wall * 1e3, 'op_ms_per_step': total,
          'by_kind': {kind: {'ms': ms, 'share': ms / total}
                      for kind, ms in by_kind.most_common(8)}}


def conv_times(name: str, repeats: int) -> dict:
  """Forward, dx and dw of one inner 3x3 convolution, XLA vs PyTorch channels_last."""
  import torch  # pylint: disable=g-import-not-at-top
  _, hparams, batch, size = CONFIGS[name]
  channels = hparams['features']
  rng = np.random.default_rng(0)
  x, grad_out = (rng.random((batch, size, size, channels), np.float32) for _ in range(2))
  w = rng.standard_normal((3, 3, channels, channels)).astype(np.float32) * 0.05

  def conv(x, w):
    return jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME',
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

  def loss(x, w):
    return jnp.sum(conv(x, w) * grad_out)

  jax_fns = {'forward': jax.jit(conv), 'dx': jax.jit(jax.grad(loss, 0)),
             'dw': jax.jit(jax.grad(loss, 1))}
  tx, tw, tg = (torch.from_numpy(a).permute(*p).contiguous(memory_format=m)
                for a, p, m in ((x, (0, 3, 1, 2), torch.channels_last),
                                (w, (3, 2, 0, 1), torch.contiguous_format),
                                (grad_out, (0, 3, 1, 2), torch.channels_last)))
  functional, grads = torch.nn.functional, torch.nn.grad
  torch_fns = {'forward': lambda: functional.conv2d(tx, tw, padding=1),
               'dx': lambda: grads.conv2d_input(tx.shape, tw, tg, padding=1),
               'dw': lambda: grads.conv2d_weight(tx, tw.shape, tg, padding=1)}
  gflop = 2 * 9 * channels * channels * size * size * batch / 1e9
  record = {'benchmark': 'profile_step', 'config': name, 'record': 'conv',
            'shape_nhwc': [batch, size, size, channels], 'gflop_each': gflop}
  for part in jax_fns:
    jax_ms = time_calls(lambda: jax.block_until_ready(jax_fns[part](x, w)),
                        repeats)['median_s'] * 1e3
    torch_ms = time_calls(torch_fns[part], repeats)['median_s'] * 1e3
    record[part] = {'jax_ms': jax_ms, 'torch_ms': torch_ms,
                    'jax_gflops': gflop / jax_ms * 1e3, 'torch_gflops': gflop / torch_ms * 1e3}
  return record


def main(argv):
  del argv
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(os.cpu_count())
  records = []
  for name in _CONFIGS.value:
    records += [op_time(name, _STEPS.value), conv_times(name, 2 * _STEPS.value)]
  report(records, _OUT.value)


if __name__ == '__main__':
  app.run(main)
