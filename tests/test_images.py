"""Image decoding (DICOM, PNG, JPEG) and preprocessing (crop, min-max, resize)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ComputedRadiographyImageStorage, ExplicitVRLittleEndian, generate_uid

from progbench.data.images import decode_image, is_dicom, load_image, preprocess
from progbench.errors import ImageDecodeError

RNG = np.random.default_rng(0)


def _dataset(rows: int, cols: int, photometric: str = "MONOCHROME2") -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ComputedRadiographyImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.PixelRepresentation = 0
    return ds


def write_dicom(
    path: Path,
    stored: np.ndarray,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    rescale: tuple[float, float] | None = None,
    window: tuple[float, float] | None = None,
) -> Path:
    ds = _dataset(*stored.shape, photometric=photometric)
    ds.set_pixel_data(stored.astype(np.uint16), photometric, bits_stored)
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.save_as(path, enforce_file_format=True)
    return path


def twelve_bit(shape: tuple[int, int] = (40, 56)) -> np.ndarray:
    return RNG.integers(0, 4096, shape).astype(np.uint16)


# ---------------------------------------------------------------------------------- DICOM


@pytest.mark.parametrize("rescale", [None, (0.5, -1024.0)])
def test_monochrome1_decodes_like_its_monochrome2_twin(
    tmp_path: Path, rescale: tuple[float, float] | None
) -> None:
    a = twelve_bit()
    m2 = write_dicom(tmp_path / "m2.dcm", a, "MONOCHROME2", rescale=rescale)
    m1 = write_dicom(tmp_path / "m1.dcm", 4095 - a, "MONOCHROME1", rescale=rescale)
    d2, d1 = decode_image(m2), decode_image(m1)
    slope, intercept = rescale or (1.0, 0.0)
    np.testing.assert_allclose(d2, a * slope + intercept)
    np.testing.assert_allclose(d1, d2)
    assert d1.dtype == np.float32 and d1.shape == a.shape


def test_monochrome1_with_window_matches_twin_after_preprocess(tmp_path: Path) -> None:
    a = twelve_bit((64, 64))
    m2 = write_dicom(tmp_path / "m2.dcm", a, "MONOCHROME2", window=(2000, 3000))
    # The twin's window is mirrored too: centre 4095 - 2000.
    m1 = write_dicom(tmp_path / "m1.dcm", 4095 - a, "MONOCHROME1", window=(2095, 3000))
    out2, out1 = load_image(m2, size=64), load_image(m1, size=64)
    assert np.abs(out2.astype(int) - out1.astype(int)).max() <= 1
    # Brighter stored value in MONOCHROME2 = brighter output.
    assert out2.ravel()[np.argmax(a)] == 255 and out2.ravel()[np.argmin(a)] == 0


def test_sixteen_bit_dicom_keeps_full_range(tmp_path: Path) -> None:
    a = RNG.integers(0, 65536, (30, 30)).astype(np.uint16)
    a[0, 0], a[0, 1] = 0, 65535
    out = decode_image(write_dicom(tmp_path / "x.dcm", a, bits_stored=16))
    np.testing.assert_array_equal(out, a.astype(np.float32))


def test_bits_stored_masks_unused_high_bits(tmp_path: Path) -> None:
    a = twelve_bit((8, 8))
    junk = a | (RNG.integers(0, 16, a.shape).astype(np.uint16) << 12)  # garbage in bits 12-15
    assert (junk != a).any()
    ds = _dataset(8, 8)
    ds.BitsStored, ds.HighBit = 12, 11
    ds.PixelData = junk.tobytes()
    ds.save_as(tmp_path / "junk.dcm", enforce_file_format=True)
    np.testing.assert_array_equal(decode_image(tmp_path / "junk.dcm"), a.astype(np.float32))


def test_rescale_slope_and_intercept_applied(tmp_path: Path) -> None:
    a = twelve_bit((10, 12))
    out = decode_image(write_dicom(tmp_path / "r.dcm", a, rescale=(2.0, -100.0)))
    np.testing.assert_allclose(out, 2.0 * a - 100.0)


def test_window_centre_width_clips_and_stretches(tmp_path: Path) -> None:
    a = np.tile(np.arange(0, 4096, 16, dtype=np.uint16), (4, 1))  # a 12-bit ramp
    out = decode_image(write_dicom(tmp_path / "w.dcm", a, window=(1000, 400)))[0]
    below, above = a[0] <= 800, a[0] >= 1200
    assert np.all(out[below] == 0) and np.all(out[above] == 4095)
    inside = out[~below & ~above]
    assert np.all(np.diff(inside) > 0) and 0 < inside.min() < inside.max() < 4095


def test_dicom_detected_by_preamble_not_suffix(tmp_path: Path) -> None:
    a = twelve_bit((6, 7))
    path = write_dicom(tmp_path / "no_suffix.img", a)
    assert is_dicom(path)
    np.testing.assert_array_equal(decode_image(path), a.astype(np.float32))


def test_truncated_dicom_names_file(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "t.dcm", twelve_bit((64, 64)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError, match=r"t\.dcm") as err:
        decode_image(path)
    assert err.value.hint and "manifest" in err.value.hint


def test_corrupt_dicom_names_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + RNG.integers(0, 256, 300, dtype=np.uint8).tobytes())
    with pytest.raises(ImageDecodeError, match=r"bad\.dcm"):
        decode_image(path)


# ---------------------------------------------------------------------------- PNG / JPEG


def test_png_8_and_16_bit(tmp_path: Path) -> None:
    a8 = RNG.integers(0, 256, (20, 30), dtype=np.uint8)
    a16 = RNG.integers(0, 65536, (20, 30)).astype(np.uint16)
    Image.fromarray(a8).save(tmp_path / "a8.png")
    Image.fromarray(a16).save(tmp_path / "a16.png")
    np.testing.assert_array_equal(decode_image(tmp_path / "a8.png"), a8)
    out16 = decode_image(tmp_path / "a16.png")
    np.testing.assert_array_equal(out16, a16)
    assert out16.dtype == np.float32 and out16.max() > 255


def test_rgb_png_becomes_luminance(tmp_path: Path) -> None:
    rgb = np.zeros((4, 3, 3), dtype=np.uint8)
    rgb[:, 0, 0], rgb[:, 1, 1], rgb[:, 2, 2] = 255, 255, 255  # red, green, blue columns
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "rgb.png")
    np.testing.assert_allclose(
        decode_image(tmp_path / "rgb.png")[0], [0.299 * 255, 0.587 * 255, 0.114 * 255], rtol=1e-5
    )


def test_jpeg(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 255, 64), (48, 1)).astype(np.uint8)
    Image.fromarray(ramp).save(tmp_path / "r.jpg", quality=95)
    out = decode_image(tmp_path / "r.jpg")
    assert out.shape == (48, 64) and np.abs(out - ramp).mean() < 3


@pytest.mark.parametrize("name", ["cut.png", "cut.jpg"])
def test_truncated_png_jpeg_name_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    Image.fromarray(RNG.integers(0, 256, (64, 64), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError, match=name.replace(".", r"\.")):
        decode_image(path)


def test_garbage_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "noise.png").write_bytes(b"not an image at all")
    with pytest.raises(ImageDecodeError, match=r"noise\.png") as err:
        decode_image(tmp_path / "noise.png")
    assert "manifest" in (err.value.hint or "")
    with pytest.raises(ImageDecodeError, match="not found"):
        decode_image(tmp_path / "absent.png")


# ------------------------------------------------------------------------------ preprocess


def test_output_shape_dtype_and_range_for_non_square_input() -> None:
    img = np.add.outer(np.arange(300.0), np.arange(200.0)).astype(np.float32) - 50  # a ramp
    out = preprocess(img, size=224)
    assert out.shape == (224, 224) and out.dtype == np.uint8
    assert out[0, 0] <= 2 and out[-1, -1] >= 253  # min-max normalised before resizing
    assert np.all(np.diff(out.astype(int), axis=0) >= 0)  # squashed, not cropped or flipped


def test_constant_image_gives_zeros_without_warnings() -> None:
    with np.errstate(all="raise"):
        out = preprocess(np.full((50, 60), 7.0, dtype=np.float32), size=32)
    assert out.shape == (32, 32) and not out.any()


def test_box_crop_then_normalise() -> None:
    img = np.zeros((100, 120), dtype=np.float32)
    img[20:60, 30:70] = np.arange(40, dtype=np.float32)[None, :] + 10  # ramp inside the box
    img[0, 0] = 1e6  # outside the box: would dominate min-max without the crop
    out = preprocess(img, size=40, box=(30, 20, 70, 60))
    expected = np.rint(np.arange(40) / 39 * 255)
    np.testing.assert_array_equal(out, np.tile(expected, (40, 1)).astype(np.uint8))


@pytest.mark.parametrize(
    ("box", "match"),
    [
        ((10, 10, 10, 20), "empty"),
        ((30, 10, 20, 20), "empty"),
        ((0, 0, 130, 50), "not inside"),
        ((-1, 0, 10, 10), "not inside"),
        ((0, float("nan"), 10, 10), "missing"),
    ],
)
def test_bad_boxes_are_explained(box: tuple[float, ...], match: str) -> None:
    with pytest.raises(ImageDecodeError, match=match):
        preprocess(np.ones((100, 120), dtype=np.float32), box=box)  # type: ignore[arg-type]


def test_load_image_names_file_on_bad_box(tmp_path: Path) -> None:
    Image.fromarray(RNG.integers(0, 256, (20, 20), dtype=np.uint8)).save(tmp_path / "s.png")
    with pytest.raises(ImageDecodeError, match=r"s\.png.*not inside"):
        load_image(tmp_path / "s.png", size=8, box=(0, 0, 50, 10))
    assert load_image(tmp_path / "s.png", size=8, box=(2, 2, 18, 18)).shape == (8, 8)


def test_functions_pickle_for_worker_processes() -> None:
    for fn in (decode_image, preprocess, load_image):
        assert pickle.loads(pickle.dumps(fn)) is fn


def test_pydicom_reads_what_tests_write(tmp_path: Path) -> None:
    # Guards the helper above: the files are real DICOM, not something only we can read.
    ds = pydicom.dcmread(write_dicom(tmp_path / "x.dcm", twelve_bit((4, 4)), "MONOCHROME1"))
    assert ds.PhotometricInterpretation == "MONOCHROME1" and ds.BitsStored == 12


@pytest.mark.parametrize("shape", [(1, 1), (1, 40), (40, 1)])
def test_a_too_small_image_is_called_too_small(tmp_path: Path, shape: tuple[int, int]) -> None:
    from PIL import Image

    from progbench.data.images import MIN_SIDE

    path = tmp_path / "dot.png"
    Image.fromarray(np.zeros(shape, dtype=np.uint8)).save(path)
    with pytest.raises(ImageDecodeError) as err:
        decode_image(path)
    h, w = shape
    assert f"dot.png is too small: {w} x {h} pixels" in err.value.message
    assert f"the minimum is {MIN_SIDE} x {MIN_SIDE}" in err.value.message
    assert "2-D" not in err.value.message
