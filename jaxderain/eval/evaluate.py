"""Evaluate a restored model on test sets: outputs, metrics, WORKDIR/eval/<set>.json, PNG."""

from __future__ import annotations

import json
import logging
import pathlib

import jax
import numpy as np
from flax import nnx

from jaxderain.data.images import write_png
from jaxderain.data.testsets import TestSet
from jaxderain.errors import NonFiniteError
from jaxderain.eval import metrics
from jaxderain.rain import rain_mask

UNITS = ('E_R, E_B and PSNR on the 0-255 scale; PSNR and SSIM on the Y channel (BT.601); '
         'removal_share, net_removal and over_subtraction are fractions of the rain '
         '(1 = all rain removed; see eval/metrics.py)')


def make_predict(graphdef, image_fn):
  """A jitted `predict(params, model_state, rainy) -> derained` for (B, H, W, 3) batches
  in [0, 1]; the output is clipped to [0, 1]. The model runs in eval mode."""

  @jax.jit
  def predict(params, model_state, rainy):
    model = nnx.merge(graphdef, params, model_state)
    model.eval()
    return jax.numpy.clip(image_fn(model(rainy)), 0.0, 1.0)

  return predict


def finite_outputs(outputs) -> np.ndarray:
  """Model outputs as numpy; a NonFiniteError when any is NaN or infinite, so nothing is
  scored or written from them."""
  outputs = np.asarray(outputs)
  if not np.isfinite(outputs).all():
    bad = np.size(outputs) - np.isfinite(outputs).sum()
    raise NonFiniteError(
        f'the model gave {bad} NaN or infinite output values: its weights are not finite (a run that diverged, or a conversion of such '
        'weights): use an earlier checkpoint, or retrain.')
  return outputs


def run_model(predict, params, model_state, images: list[np.ndarray],
              batch_size: int = 8) -> list[np.ndarray]:
  """Outputs for a list of (H, W, 3) images, batched among images of the same size."""
  outputs = [None] * len(images)
  by_shape = {}
  for i, image in enumerate(images):
    by_shape.setdefault(image.shape, []).append(i)
  for indices in by_shape.values():
    for start in range(0, len(indices), batch_size):
      chunk = indices[start:start + batch_size]
      batch = np.stack([images[i] for i in chunk])
      for i, out in zip(chunk, finite_outputs(predict(params, model_state, batch))):
        outputs[i] = out
  return outputs


def score(outputs, test_set: TestSet, threshold: float) -> dict:
  """Per-image metrics of `outputs` on `test_set`, their means, and the identity's and the
  perfect output's E_R / E_B on the same images and mask, for reference."""
  rows = []
  for out, o, b, r in zip(outputs, test_set.rainy, test_set.clean, test_set.rain_layer):
    mask = rain_mask(r, threshold)
    e_r, e_b = metrics.decoupled_errors(out, o, b, mask)
    _, id_b = metrics.decoupled_errors(o, o, b, mask)  # the identity's E_R is 0
    perfect_r, _ = metrics.decoupled_errors(b, o, b, mask)
    rows.append({'E_R': e_r, 'E_B': e_b, 'psnr': metrics.psnr_y(out, b),
                 'ssim': metrics.ssim_y(out, b),
                 'removal_share': metrics.removal_share(out, o, b, mask),
                 'net_removal': metrics.net_removal(out, o, b, mask),
                 'over_subtraction': metrics.over_subtraction(out, o, b, mask),
                 'rain_fraction': float(mask.mean()),
                 'identity_E_B': id_b, 'identity_psnr': metrics.psnr_y(o, b),
                 'perfect_E_R': perfect_r})
  mean = {k: float(np.nanmean([row[k] for row in rows])) for k in rows[0]}
  return {
      'E_R': mean['E_R'], 'E_B': mean['E_B'], 'psnr': mean['psnr'], 'ssim': mean['ssim'],
      **{k: mean[k] for k in ('removal_share', 'net_removal', 'over_subtraction')},
      'reference': {'identity': {'E_R': 0.0, 'E_B': mean['identity_E_B'],
                                 'psnr': mean['identity_psnr']},
                    'perfect': {'E_R': mean['perfect_E_R'], 'E_B': 0.0}},
      'rain_fraction': mean['rain_fraction'],
      'num_images': len(rows), 'per_image': rows,
  }


def image_strip(test_set: TestSet, outputs, count: int) -> np.ndarray:
  """uint8 rows of rainy | output | clean for the first `count` images."""
  rows = [np.concatenate([o, out, b], axis=1)
          for o, out, b in list(zip(test_set.rainy, outputs, test_set.clean))[:count]]
  width = max(r.shape[1] for r in rows)
  rows = [np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0))) for r in rows]
  return (np.concatenate(rows, axis=0) * 255.0 + 0.5).astype(np.uint8)


def _rounded(tree, digits: int = 7):
  """`tree` with floats to `digits` significant digits, for compact JSON."""
  if isinstance(tree, float):
    return float(f'{tree:.{digits}g}')
  if isinstance(tree, dict):
    return {k: _rounded(v, digits) for k, v in tree.items()}
  if isinstance(tree, list):
    return [_rounded(v, digits) for v in tree]
  return tree


def evaluate(predict, params, model_state, test_sets: list[TestSet], *, step: int,
             threshold: float, outdir=None, strip_images: int = 4,
             earlier: list[dict[str, dict]] = ()) -> dict[str, dict]:
  """Evaluate every test set; with `outdir`, write OUTDIR/<name>.json and <name>.png.

  earlier: results of earlier checkpoints on the same sets; each result then gets
  `recent`, the means of metrics.METRIC_KEYS over those and this step (metrics swing
  between checkpoints). Returns {test set name: result dict}."""
  results = {}
  for test_set in test_sets:
    outputs = run_model(predict, params, model_state, test_set.rainy)
    result = {'testset': test_set.name, 'step': step, 'rain_threshold': threshold,
              'units': UNITS, **score(outputs, test_set, threshold)}
    window = [e[test_set.name] for e in earlier] + [result]
    result['recent'] = {'steps': [r['step'] for r in window],
                        **{k: float(np.mean([r[k] for r in window]))
                           for k in metrics.METRIC_KEYS}}
    if outdir is not None:
      outdir = pathlib.Path(outdir)
      outdir.mkdir(parents=True, exist_ok=True)
      (outdir / f'{test_set.name}.json').write_text(json.dumps(_rounded(result), indent=1))
      strip = image_strip(test_set, outputs, strip_images)
      write_png(outdir / f'{test_set.name}.png', [strip], *strip.shape)
    results[test_set.name] = result
  return results


# Room an evaluation's files take at most, per test set: its JSON and its image strip.
EVAL_BYTES_PER_SET = 4 * 2**20


def evaluate_checkpoints(predict, states: list[tuple[int, object]],
                         test_sets: list[TestSet], *, threshold: float, outdir=None,
                         strip_images: int = 4) -> dict[str, dict]:
  """`evaluate` the last of `states` ([(step, TrainState)], oldest first: a run's last
  checkpoints), with `recent` means over all of them, and log its summary table; with
  `outdir`, the last one's files go there (EVAL_BYTES_PER_SET a set at most)."""
  earlier = []
  for step, state in states:
    earlier.append(evaluate(predict, state.params, state.model_state, test_sets, step=step,
                            threshold=threshold, earlier=earlier,
                            outdir=outdir if step == states[-1][0] else None,
                            strip_images=strip_images))
  for line in summary_table(earlier[-1]):
    logging.info('%s', line)
  return earlier[-1]


# The columns of the console's evaluation summary: (result key, heading, format).
SUMMARY_COLUMNS = (('E_R', 'E_R', '.2f'), ('E_B', 'E_B', '.2f'), ('psnr', 'PSNR', '.2f'),
                   ('ssim', 'SSIM', '.4f'), ('net_removal', 'net removal', '.3f'),
                   ('over_subtraction', 'over-sub.', '.3f'))


def summary_table(results: dict[str, dict]) -> list[str]:
  """The evaluation as text lines: one row per test set with the means over the last
  checkpoints (`recent`); E_R, E_B and PSNR on the 0-255 scale."""
  width = max([len('test set')] + [len(name) for name in results])
  step = next(iter(results.values()))['step'] if results else 0
  lines = [f'Evaluation at step {step} (means over the last checkpoints, 0-255 scale):',
           f'{"test set":<{width}}' + ''.join(f'{h:>12}' for _, h, _ in SUMMARY_COLUMNS)]
  for name, result in results.items():
    recent = result.get('recent', result)
    lines.append(f'{name:<{width}}' + ''.join(f'{recent[k]:>12{fmt}}'
                                               for k, _, fmt in SUMMARY_COLUMNS))
  return lines
