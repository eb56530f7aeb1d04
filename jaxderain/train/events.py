"""TensorBoard scalars (train/loss, train/grad_norm, steps_per_sec) in
WORKDIR/events.out.tfevents.*, written with tensorboard's own event writer: no
TensorFlow is imported to train, which keeps a command's start-up short."""

from __future__ import annotations

import time

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter


class EventWriter:
  """Scalars of one run into an event file in `logdir`; with logdir None (processes
  other than the lead) it writes nothing."""

  def __init__(self, logdir: str | None):
    self._file = None if logdir is None else EventFileWriter(str(logdir))

  def write_scalars(self, step: int, scalars: dict[str, float]) -> None:
    if self._file is None:
      return
    values = [summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
              for tag, value in scalars.items()]
    self._file.add_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                         summary=summary_pb2.Summary(value=values)))

  def flush(self) -> None:
    if self._file is not None:
      self._file.flush()
