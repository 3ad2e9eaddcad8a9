"""Small Zarr v3 helpers shared by the image and feature stores."""

from __future__ import annotations

import numpy as np
import zarr


def read_strings(array: zarr.Array) -> np.ndarray:
    """A Zarr string array as a numpy object array of Python str (StringDType does not cast to '<U')."""
    return np.array([str(v) for v in array[:].tolist()], dtype=object)


def write_strings(group: zarr.Group, name: str, values: list[str] | np.ndarray) -> zarr.Array:
    arr = group.create_array(name, shape=(len(values),), dtype=str)
    arr[:] = np.asarray([str(v) for v in values])
    return arr
