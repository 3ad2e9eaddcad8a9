"""Decode radiographs (DICOM, PNG, JPEG) to float arrays, then crop, normalise and resize.

Every function here is a picklable top-level function without global state: the image store
calls them from worker processes. Output convention: 2-D, larger value = brighter = denser
("white bone"), whatever the file's photometric interpretation was.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from progbench.errors import ImageDecodeError

DEFAULT_SIZE = 224  # the reference study's input side
MIN_SIDE = 2  # pixels: the smallest image side that can be min-max normalised and resized

_DICOM_SUFFIXES = {".dcm", ".dicom", ".dic"}
_FIX_HINT = "Re-export the image (uncompressed DICOM or PNG), or drop its row from the manifest."
# ITU-R BT.601 luma, the same weights Pillow uses for RGB -> L.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def is_dicom(path: Path) -> bool:
    """A DICOM file: the 'DICM' magic after the 128-byte preamble, or a DICOM suffix."""
    if path.suffix.lower() in _DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def decode_image(path: Path) -> np.ndarray:
    """Read one image file into a 2-D float32 array (larger = brighter).

    Raises ImageDecodeError, naming the file and the cause, for anything that cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageDecodeError(
            f"Image file not found: {path}",
            "Check the manifest's `path` column (paths are relative to the manifest).",
        )
    try:
        arr = _decode_dicom(path) if is_dicom(path) else _decode_pillow(path)
    except ImageDecodeError:
        raise
    except Exception as err:  # any library failure becomes one error type that names the file
        raise ImageDecodeError(
            f"Cannot decode image {path}: {type(err).__name__}: {err}", _FIX_HINT
        ) from err
    if arr.ndim != 2:
        raise ImageDecodeError(
            f"Image {path} decoded to shape {arr.shape}; expected one 2-D grayscale image.",
            _FIX_HINT,
        )
    if min(arr.shape) < MIN_SIDE:
        height, width = arr.shape
        raise ImageDecodeError(
            f"Image {path} is too small: {width} x {height} pixels; the minimum is "
            f"{MIN_SIDE} x {MIN_SIDE} (a radiograph has hundreds of pixels a side).",
            "Check that the file is the image you meant (not a thumbnail or placeholder), or "
            "drop its row from the manifest.",
        )
    if not np.isfinite(arr).all():
        raise ImageDecodeError(f"Image {path} holds NaN or infinite pixel values.", _FIX_HINT)
    return arr


def _decode_pillow(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as opened:
            img = ImageOps.exif_transpose(opened)  # camera JPEGs may store rotation in EXIF
            img.load()  # a truncated file fails here (Pillow's LOAD_TRUNCATED_IMAGES is off)
            return _pil_to_gray(img)
    except UnidentifiedImageError as err:
        raise ImageDecodeError(
            f"Cannot decode image {path}: not a readable PNG/JPEG/TIFF/DICOM file ({err}).",
            _FIX_HINT,
        ) from err


def _pil_to_gray(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("L", "I", "F") or mode.startswith("I;16"):
        return np.asarray(img).astype(np.float32)
    if mode in ("LA", "La"):
        return np.asarray(img.getchannel("L")).astype(np.float32)
    if mode == "1":
        return np.asarray(img.convert("L")).astype(np.float32)
    # RGB(A), palette, CMYK, YCbCr...: luminance from RGB, alpha ignored.
    rgb = np.asarray(img.convert("RGB")).astype(np.float32)
    return rgb @ _LUMA


def _decode_dicom(path: Path) -> np.ndarray:
    import pydicom  # imported here: a PNG-only cohort never pays for it
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        # force=True reads files that lack the 128-byte preamble but carry a .dcm suffix.
        ds = pydicom.dcmread(path, force=True)
    except InvalidDicomError as err:
        raise ImageDecodeError(f"Cannot read DICOM {path}: {err}", _FIX_HINT) from err
    if "PixelData" not in ds:
        raise ImageDecodeError(
            f"DICOM {path} has no pixel data (a structured report or a truncated file?).",
            _FIX_HINT,
        )
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if n_frames != 1:
        raise ImageDecodeError(
            f"DICOM {path} holds {n_frames} frames; progbench reads single-frame radiographs.",
            "Export the frame to use as its own file and list that file in the manifest.",
        )
    try:
        raw = ds.pixel_array  # pydicom masks bits above BitsStored and sign-extends signed data
    except (NotImplementedError, RuntimeError, ValueError) as err:
        raise _undecodable(path, ds, err) from err
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        # Colour DICOM (secondary captures): pydicom already converted YBR to RGB.
        if raw.ndim == 3 and raw.shape[-1] in (3, 4):
            return raw[..., :3].astype(np.float32) @ _LUMA
        raise ImageDecodeError(
            f"DICOM {path} has unsupported PhotometricInterpretation {photometric!r}.", _FIX_HINT
        )
    lo, hi = _modality_range(ds)
    arr = np.asarray(apply_modality_lut(raw, ds), dtype=np.float64)
    voi_range = _voi_range(ds, lo, hi)
    arr = np.asarray(apply_voi_lut(arr, ds), dtype=np.float64)
    lo, hi = voi_range
    if photometric == "MONOCHROME1":
        # Low values display white: mirror inside the output range so that a MONOCHROME1
        # file and its MONOCHROME2 twin decode to the same numbers. PresentationLUTShape is
        # not applied on top: in DX it restates the same inversion (INVERSE for MONOCHROME1).
        arr = (lo + hi) - arr
    return arr.astype(np.float32)


def _undecodable(path: Path, ds: object, err: Exception) -> ImageDecodeError:
    """The transfer syntax, by name, and the decoder plugins pydicom would use for it."""
    from pydicom.pixels import get_decoder

    meta = getattr(ds, "file_meta", None)
    uid = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    if uid is None:
        return ImageDecodeError(f"Cannot decode pixel data of DICOM {path}: {err}", _FIX_HINT)
    plugins: list[str] = []
    # NotImplementedError/ValueError: pydicom has no decoder for this syntax at all.
    with contextlib.suppress(NotImplementedError, ValueError):
        plugins = list(get_decoder(uid).missing_dependencies)
    if plugins:
        pick = next((p for p in plugins if p.startswith("pylibjpeg")), plugins[0])
        hint = (
            f"Install a decoder pydicom supports for it ({'; '.join(plugins)}), e.g. "
            f"`pip install {_package_of(pick)}`, or re-export the file uncompressed"
        )
    else:
        hint = "Re-export the file uncompressed (pydicom has no decoder for this transfer syntax)"
    return ImageDecodeError(
        f"Cannot decode pixel data of DICOM {path}: its transfer syntax {uid.name} ({uid}) "
        "needs a decoder that is not installed",
        hint + "; otherwise drop its row from the manifest.",
    )


def _package_of(requirement: str) -> str:
    """'pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-libjpeg>=2.1' -> the packages."""
    needs = requirement.split("requires", 1)[-1].replace(" and ", " ").split()
    return " ".join(n.split(">")[0].split("=")[0] for n in needs if n != "numpy")


def _modality_range(ds: object) -> tuple[float, float]:
    """Range of values after the Modality LUT / rescale, from the stored-value range."""
    mod_seq = getattr(ds, "ModalityLUTSequence", None)
    if mod_seq:
        bits = int(mod_seq[0].LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    bits_stored = int(getattr(ds, "BitsStored", 16))
    if int(getattr(ds, "PixelRepresentation", 0)) == 0:
        lo, hi = 0.0, float(2**bits_stored - 1)
    else:
        lo, hi = float(-(2 ** (bits_stored - 1))), float(2 ** (bits_stored - 1) - 1)
    slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
    intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
    a, b = lo * slope + intercept, hi * slope + intercept
    return min(a, b), max(a, b)


def _voi_range(ds: object, lo: float, hi: float) -> tuple[float, float]:
    """Range of values after apply_voi_lut: the VOI LUT's output bits, else unchanged.

    pydicom's windowing maps onto the modality range, so that range stays valid after it.
    """
    voi_seq = getattr(ds, "VOILUTSequence", None)
    if voi_seq and voi_seq[0].get("LUTDescriptor") is not None:
        bits = int(voi_seq[0].LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    return lo, hi


def preprocess(
    img: np.ndarray,
    size: int = DEFAULT_SIZE,
    box: tuple[float, float, float, float] | None = None,
) -> np.ndarray:
    """Crop to `box`, min-max normalise, resize to size x size; return uint8 (size, size).

    `box` is (x0, y0, x1, y1) in pixel coordinates of `img` (x = column). Non-square inputs
    are squashed to a square, as the reference study resizes straight to 224 x 224.
    Resizing uses Pillow's bilinear filter on a float32 'F' image: it widens its support when
    downsampling (antialiased), needs no torch in the worker processes, and matches what
    torchvision's PIL path does.
    """
    img = np.asarray(img)
    if img.ndim != 2:
        raise ImageDecodeError(f"preprocess expects a 2-D image, got shape {img.shape}.")
    if not isinstance(size, int) or size < 1:
        raise ImageDecodeError(f"Output size must be a positive integer, got {size!r}.")
    if box is not None:
        img = crop_to_box(img, box)
    img = img.astype(np.float32, copy=False)
    lo, hi = float(img.min()), float(img.max())
    # A constant image has no contrast: zeros, rather than a division by zero and NaNs.
    norm = (img - lo) / np.float32(hi - lo) if hi > lo else np.zeros_like(img, dtype=np.float32)
    if norm.shape != (size, size):
        resized = Image.fromarray(np.ascontiguousarray(norm)).resize(
            (size, size), resample=Image.Resampling.BILINEAR
        )
        norm = np.asarray(resized, dtype=np.float32)
    return np.clip(np.rint(norm * 255.0), 0, 255).astype(np.uint8)


def crop_to_box(img: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """Crop (x0, y0, x1, y1) in pixels; fractional edges are widened to whole pixels."""
    h, w = img.shape
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError) as err:
        raise ImageDecodeError(
            f"Bounding box {box!r} must be four numbers (x0, y0, x1, y1)."
        ) from err
    hint = (
        "Box columns are pixel coordinates of the decoded image; fix or blank them in the manifest."
    )
    if not all(np.isfinite(v) for v in (x0, y0, x1, y1)):
        raise ImageDecodeError(f"Bounding box {box!r} holds a missing or infinite value.", hint)
    if not (x1 > x0 and y1 > y0):
        raise ImageDecodeError(f"Bounding box {box!r} is empty: need x1 > x0 and y1 > y0.", hint)
    if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
        raise ImageDecodeError(
            f"Bounding box {box!r} is not inside the image (width {w}, height {h}).", hint
        )
    c0, r0 = int(np.floor(x0)), int(np.floor(y0))
    c1, r1 = int(np.ceil(x1)), int(np.ceil(y1))
    return img[r0:r1, c0:c1]


def equalize_histogram(img: np.ndarray) -> np.ndarray:
    """The reference study's AIforCOVID conversion: min-max to 8 bit over the whole image, then
    global histogram equalisation (Pillow's ImageOps.equalize; the authors used OpenCV's
    equalizeHist, which maps the same cumulative histogram up to rounding)."""
    lo, hi = float(img.min()), float(img.max())
    scaled = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    as_uint8 = np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8)
    return np.asarray(ImageOps.equalize(Image.fromarray(as_uint8)), dtype=np.float32)


def load_image(
    path: Path,
    size: int = DEFAULT_SIZE,
    box: tuple[float, float, float, float] | None = None,
    equalize: bool = False,
) -> np.ndarray:
    """decode_image (then, if asked, histogram equalisation) then preprocess; a bad box is
    reported with the file's name."""
    arr = decode_image(path)
    if equalize:
        arr = equalize_histogram(arr)
    try:
        return preprocess(arr, size=size, box=box)
    except ImageDecodeError as err:
        raise ImageDecodeError(f"{Path(path)}: {err.message}", err.hint) from err
