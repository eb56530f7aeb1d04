"""Where a sweep stands, read from its folder alone (no cluster, nothing started).

A point is `done` (done.json and its results readable), `running` (a live process holds
its workdir's lock: training or evaluation, with its host and PID), `failed` (its
failed.json says why), `started` (checkpoints, no process: a sweep resumes it) or
`pending` (nothing yet; listed only when the grid is given).
"""

from __future__ import annotations

import json
import pathlib

from jaxderain.study import sweep
from jaxderain.study.grids import Point
from jaxderain.workdir import latest_step, lock_holder

STATES = ('done', 'running', 'failed', 'started', 'pending')


def point_states(out, points: list[Point] | None = None) -> list[dict]:
  """One row per point of OUT (and per point of `points` not there yet): its name,
  state, latest checkpoint step, seconds (done points) and a note."""
  out = pathlib.Path(out)
  names = [p.name for p in points or ()]  # the grid's order, then any other folders
  names += sorted(p.name for p in (out / 'points').glob('*')
                  if p.is_dir() and p.name not in names)
  rows = []
  for name in names:
    workdir = out / 'points' / name
    holder = lock_holder(workdir) if workdir.is_dir() else None
    step = latest_step(workdir) if workdir.is_dir() else None
    row = {'point': name, 'step': step, 'seconds': None, 'note': ''}
    if sweep.is_done(workdir):
      row['state'] = 'done'
      row['seconds'] = json.loads((workdir / 'done.json').read_text()).get('seconds')
    elif holder:
      row['state'] = 'running'
      row['note'] = f'{holder.get("purpose")} by PID {holder.get("pid")} on {holder.get("host")}'
    elif (reason := sweep.failure(workdir)) is not None:
      row['state'], row['note'] = 'failed', reason[:120]
    else:
      row['state'] = 'started' if step is not None else 'pending'
    rows.append(row)
  return rows


def lines(rows: list[dict]) -> list[str]:
  """The rows as a table, then the count of each state."""
  width = max([5] + [len(r['point']) for r in rows])
  out = [f'{"point":<{width}}  {"state":<8}{"step":>7}{"seconds":>9}  note']
  for row in rows:
    step = '' if row['step'] is None else row['step']
    seconds = '' if row['seconds'] is None else f'{row["seconds"]:.0f}'
    out.append(f'{row["point"]:<{width}}  {row["state"]:<8}{step:>7}{seconds:>9}  {row["note"]}')
  counts = {state: sum(r['state'] == state for r in rows) for state in STATES}
  out.append(', '.join(f'{n} {state}' for state, n in counts.items() if n) or 'no points')
  return out
