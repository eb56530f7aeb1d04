"""Measured statistics of each rain: training ranges, the unseen test rain, and Rain100L.

  python -m benchmarks.rain_stats [--rain100l=DATA/rain100L] [--out=...json]

Mean, share of pixels above 0.1, and percentiles of the measured streak angle and length
(jaxderain.rain.stats) over 64 layers of 128x128 per synthetic rain, or over every
Rain100L layer (rainy - clean). These are the numbers of the README's rain table.
"""

import json
import os
import pathlib


import jax  # pylint: disable=g-import-not-at-top
import numpy as np
from absl import app, flags

from jaxderain import data, rain
from jaxderain.rain import stats

_RAIN100L = flags.DEFINE_string(
    'rain100l', os.path.join(os.environ.get('JAXDERAIN_DATA_DIR', ''), 'rain100L'),
    'Paired Rain100L folder (skipped if absent).')
_OUT = flags.DEFINE_string('out', 'benchmarks/results/rain_stats.json', 'JSON output.')


def describe(name, layers) -> dict:
  measured = stats.summary(layers)
  pct = lambda values: np.percentile(values, [0, 10, 50, 90, 100]).round(1).tolist()
  return {'rain': name, 'mean': round(measured['mean'], 4),
          'coverage': round(measured['coverage'], 4),
          'angle_percentiles_0_10_50_90_100': pct(measured['angles']),
          'abs_angle_percentiles': pct(np.abs(measured['angles'])),
          'length_percentiles': pct(measured['lengths']), 'layers': len(layers)}


def main(argv):
  del argv
  ranges = {**rain.TRAINING_RANGES, 'unseen': rain.UNSEEN_RANGE}
  results = [describe(name, np.asarray(rain.synthesize(jax.random.key(0), 64, 128, 128, r)))
             for name, r in ranges.items()]
  if pathlib.Path(_RAIN100L.value).is_dir():
    results.append(describe('rain100L', data.paired_folder('r', _RAIN100L.value).rain_layer))
  for result in results:
    print(json.dumps(result))
  out = pathlib.Path(_OUT.value)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(results, indent=1))


if __name__ == '__main__':
  app.run(main)
