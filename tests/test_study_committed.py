"""The committed study results: what the reports and the pre-registration say of them."""

import json
import math
import pathlib

import pytest

from jaxderain.study import grids, primary, results

STUDIES = pathlib.Path(__file__).resolve().parents[1] / 'docs' / 'studies'


def _intervals(tree):
  """Every {'estimate', 'low', 'high'} record in a verdicts.json tree."""
  if isinstance(tree, dict):
    if {'estimate', 'low', 'high'} <= set(tree):
      yield tree
    for value in tree.values():
      yield from _intervals(value)
  elif isinstance(tree, list):
    for value in tree:
      yield from _intervals(value)


def test_no_committed_interval_excludes_its_own_estimate():
  files = sorted(STUDIES.glob('*/report*/verdicts.json'))
  assert files, 'no committed report'
  checked = 0
  for path in files:
    for record in _intervals(json.loads(path.read_text())['verdicts']):
      low, high, estimate = (math.nan if record[k] is None else record[k]
                             for k in ('low', 'high', 'estimate'))
      if math.isnan(estimate) or math.isnan(low):
        continue  # no interval (JSON keeps infinite bounds as None: no bound)
      assert low <= estimate + 1e-9 and estimate <= high + 1e-9, (path, record)
      checked += 1
  assert checked > 50


def test_the_confirmatory_seeds_are_what_the_power_analysis_asks():
  points, _ = results.load_points(STUDIES / 'cpu')
  table = primary.power(results.result_rows(points))
  needed = primary.seeds_needed(table)
  assert set(needed) == {t.claim for t in primary.TESTS}
  assert needed[2] == primary.MAX_SEEDS and next(
      r for r in table if r.claim == 2).seeds is None  # claim 2 needs more than 10
  assert len(primary.CONFIRMATORY_SEEDS) == max(needed.values())
  assert len(grids.grid_points('confirm', 'cpu')) == 2 * 5 * max(needed.values())
  assert primary.TREND_SEEDS >= 5 and primary.TREND_SEEDS >= max(
      needed[c] for c in primary.TREND_CLAIMS)
