"""Where a sweep stands, read from its folder alone (no cluster, nothing started).

A point is `done` (its done record and results read back), `running` (a live process
holds its workdir's lock: training or evaluation, with its host and PID), `failed` (its
failure record says why), `started` (checkpoints, no process: a sweep resumes it) or
`pending` (nothing yet, or a damaged done record, named in the note).
"""

from __future__ import annotations

from jaxderain.errors import NotFoundError
from jaxderain.study.folders import StudyFolder
from jaxderain.study.grids import Point

STATES = ('done', 'running', 'failed', 'started', 'pending')


def point_states(out, points: list[Point] | None = None) -> list[dict]:
  """One row per point of OUT (and per point of `points` not there yet): its name,
  state, latest checkpoint step, seconds (done points) and a note."""
  study = StudyFolder(out)
  if not study.path.is_dir():
    raise NotFoundError(f'{study.path} does not exist: pass the --out folder of a study '
                        'sweep (python -m jaxderain.study run --out=DIR made it).')
  names = [p.name for p in points or ()]  # the grid's order, then any other folders
  names += [p.name for p in study.points() if p.name not in names]
  rows = []
  for name in names:
    folder = study.point(name)
    holder, step = folder.lock_holder(), folder.latest_step()
    row = {'point': name, 'step': step, 'seconds': None, 'note': ''}
    try:
      record, damaged = folder.done_record(), ''
    except ValueError as error:  # named in the note; the point runs again
      record, damaged = None, str(error)
    if record and folder.is_done():
      row['state'], row['seconds'] = 'done', record.seconds
    elif holder:
      row['state'] = 'running'
      row['note'] = f'{holder.get("purpose")} by PID {holder.get("pid")} on {holder.get("host")}'
    elif (reason := folder.failure()) is not None:
      row['state'], row['note'] = 'failed', reason[:120]
    else:
      row['state'] = 'started' if step is not None else 'pending'
      row['note'] = damaged
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
