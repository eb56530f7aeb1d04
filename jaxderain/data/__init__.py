"""Images in; exact background sets and test sets out."""

from jaxderain.data.backgrounds import Category, background_set, load_category, upscale_small
from jaxderain.data.images import ImageError, load_folder, load_image
from jaxderain.data.testsets import (TestSet, heldout_real_rain, heldout_synthetic,
                                     paired_folder, paired_set, with_synthetic_rain)

__all__ = ['Category', 'ImageError', 'TestSet', 'background_set', 'heldout_real_rain',
           'heldout_synthetic', 'load_category', 'load_folder', 'load_image', 'paired_folder', 'paired_set',
           'with_synthetic_rain',
           'upscale_small']
