"""Rain layers: the training recipe (Table 1), unseen test rain and the metric mask."""

from jaxderain.rain.streaks import (RAIN_RANGES, TRAINING_RANGES, UNSEEN_RANGE, RainRange,
                                    rain_mask, synthesize)

__all__ = ['RAIN_RANGES', 'RainRange', 'TRAINING_RANGES', 'UNSEEN_RANGE', 'rain_mask',
           'synthesize']
