"""Rain layers: the training recipe (Table 1), unseen test rain and the metric mask."""

from jaxderain.rain.streaks import RainRange, TRAINING_RANGES, UNSEEN_RANGE, rain_mask, synthesize

__all__ = ['RainRange', 'TRAINING_RANGES', 'UNSEEN_RANGE', 'rain_mask', 'synthesize']
