"""Images in; exact background sets and test sets out."""

from jaxderain.data.backgrounds import (BackgroundSpec, Category, background_set, load_category,
                                        training_set, upscale_small)
from jaxderain.data.images import (IMAGE_SUFFIXES, ImageError, Photo, load_folder, load_image,
                                    png_bytes_bound, read_photo, write_photo, write_png)
from jaxderain.data.testsets import (TestSet, TestSpec, heldout_real_rain, paired_folder,
                                     paired_set, point_test_sets, with_synthetic_rain)

__all__ = ['BackgroundSpec', 'Category', 'IMAGE_SUFFIXES', 'ImageError', 'Photo', 'TestSet',
           'TestSpec', 'background_set', 'heldout_real_rain', 'load_category', 'load_folder',
           'load_image', 'paired_folder', 'paired_set', 'png_bytes_bound', 'point_test_sets',
           'read_photo', 'training_set', 'upscale_small', 'with_synthetic_rain',
           'write_photo', 'write_png']
