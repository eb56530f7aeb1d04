"""XLA's fast CPU path, applied before JAX starts (import this before jax).

On a 2-core AVX-512 machine XLA's default CPU convolutions used about 1.2 cores;
`--xla_cpu_experimental_ynn_fusion_type=eltwise,reduce,dot` made training 2.7-3x faster
with the same losses. An unknown flag aborts the process, so support is probed in a child
process first.
"""

from __future__ import annotations

import os
import subprocess
import sys

FAST_CPU_FLAG = '--xla_cpu_experimental_ynn_fusion_type=eltwise,reduce,dot'


def flag_supported(flag: str) -> bool:
  """Whether the installed jaxlib starts with `flag` in XLA_FLAGS (probed in a child)."""
  env = {**os.environ, 'XLA_FLAGS': flag, 'JAX_PLATFORMS': 'cpu'}
  probe = 'import jax.numpy as jnp; jnp.ones(2).sum().block_until_ready()'
  result = subprocess.run([sys.executable, '-c', probe], env=env, capture_output=True,
                          timeout=120, check=False)
  return result.returncode == 0


def apply_fast_cpu_flag(environ=os.environ) -> str | None:
  """Set XLA_FLAGS to FAST_CPU_FLAG unless the user set XLA_FLAGS or jaxlib rejects it.

  Returns the flag if applied, else None. Has no effect once JAX's backend has started.
  """
  if 'XLA_FLAGS' in environ or not flag_supported(FAST_CPU_FLAG):
    return None
  environ['XLA_FLAGS'] = FAST_CPU_FLAG
  return FAST_CPU_FLAG
