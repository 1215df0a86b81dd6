"""Shared logic for single-frame DICOM image series (CT, PET): read, check, sort and stack the slices
into one `SimpleITK.Image` with exact LPS geometry.

The checks are the ones a physicist relies on before trusting a volume: one series, one frame of
reference, identical orientation and in-plane geometry on every slice, and slices that are evenly
spaced along the slice normal (a gap is reported as a missing slice, naming the file after it).
"""
from __future__ import annotations

import datetime as _dt
import warnings
from pathlib import Path

import numpy as np

from COMPASSLib.errors import GeometryError, InputError

# Spacing tolerance between consecutive slices: ~0.01 mm absolute or 1e-3 relative, whichever is
# larger (scanners write positions rounded to a few decimals; real gaps are a whole slice).
SPACING_ATOL_MM = 0.01
SPACING_RANGE_MM = (1e-3, 1e4)   # plausible voxel spacings: 1 micrometre to 10 m
SPACING_RTOL = 1e-3
ORIENTATION_TOL = 1e-4


def as_file_list(files) -> list:
    """A path or a list of paths -> list[Path]."""
    if isinstance(files, (str, Path)):
        return [Path(files)]
    return [Path(f) for f in files]


def read_dataset(path, stop_before_pixels=False, patient=None, fraction=None):
    """pydicom dataset, or InputError naming the file when it is not DICOM.

    Files without the 128-byte preamble and 'DICM' prefix (older writers; pydicom's own rtstruct.dcm)
    are read with force=True, and accepted only when they then carry a SOPClassUID or Modality, so
    arbitrary files are still refused."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    def fail(why):
        return InputError(f"cannot read DICOM file: {why}", file=path, patient=patient, fraction=fraction)

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=stop_before_pixels)
    except InvalidDicomError as e:
        first_error = e
    except (OSError, EOFError, ValueError, KeyError, TypeError) as e:
        raise fail(e) from None
    try:
        with warnings.catch_warnings():   # a forced read of a non-DICOM file warns about VRs
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(str(path), stop_before_pixels=stop_before_pixels, force=True)
            if "SOPClassUID" in ds or "Modality" in ds:
                return ds
    except Exception:  # noqa: BLE001 - a forced read of a non-DICOM file fails in arbitrary ways
        pass
    raise fail(first_error) from None


def dicom_datetime(date, time) -> _dt.datetime | None:
    """DICOM DA + TM (TM may be HH, HHMM, HHMMSS, HHMMSS.ffffff, or with colons) -> datetime."""
    if not date or not time:
        return None
    date, time = str(date).strip().replace("-", "").replace(".", ""), str(time).strip().replace(":", "")
    try:
        day = _dt.datetime.strptime(date[:8], "%Y%m%d")
        main, _, frac = time.partition(".")
        main = main.ljust(6, "0")
        seconds = int(main[0:2]) * 3600 + int(main[2:4]) * 60 + int(main[4:6])
        micro = int((frac + "000000")[:6]) if frac else 0
    except ValueError:
        return None
    return day + _dt.timedelta(seconds=seconds, microseconds=micro)


def dicom_datetime_dt(value) -> _dt.datetime | None:
    """DICOM DT (YYYYMMDDHHMMSS.ffffff, optional UTC offset ignored) -> datetime."""
    if not value:
        return None
    value = str(value).strip()
    for sign in "+-":
        if sign in value[8:]:
            value = value[: 8 + value[8:].index(sign)]
    return dicom_datetime(value[:8], value[8:] or "000000")


def tag_name(keyword: str) -> str:
    """'Rows' -> 'Rows (0028,0010)'."""
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    return f"{keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X})" if tag is not None else keyword


def _conversion_errors() -> tuple:
    """What pydicom raises when it turns an element's bytes into a value (wrong length for the VR, text
    where a number belongs), and what Python raises converting that value."""
    from pydicom.errors import BytesLengthException

    return (BytesLengthException, ValueError, TypeError, OverflowError)


def element_value(ds, keyword, path=None, patient=None, fraction=None, default=None):
    """`ds.get(keyword, default)`; an element pydicom cannot convert is an InputError naming the file and the
    tag (not a pydicom exception from deep inside the reader)."""
    try:
        return ds.get(keyword, default)
    except _conversion_errors() as e:
        raise InputError(f"unreadable {tag_name(keyword)}: {e}", file=path, patient=patient,
                         fraction=fraction) from None


def dicom_numbers(ds, keyword, n, path=None, patient=None, fraction=None, *, required=True):
    """The `n` (None: any number of) finite numbers of `keyword` as float64, or None when the element is
    absent or empty and not `required`. InputError naming the file and the tag when it is missing (and
    required), holds another number of values, or values that are not finite numbers."""
    where = dict(file=path, patient=patient, fraction=fraction)
    value = element_value(ds, keyword, path, patient, fraction)
    if value is None or (isinstance(value, (str, bytes)) and not value.strip()):
        if required:
            raise InputError(f"missing tag {tag_name(keyword)}", **where)
        return None
    values = list(value) if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]
    if n is not None and len(values) != n:
        raise InputError(f"malformed {tag_name(keyword)}: {len(values)} value(s), {n} expected", **where)
    try:
        out = np.array([float(v) for v in values], dtype=np.float64)
    except _conversion_errors():
        raise InputError(f"malformed {tag_name(keyword)}: {str(value)[:60]!r} is not a number", **where) from None
    if not np.isfinite(out).all():
        raise InputError(f"malformed {tag_name(keyword)}: {str(value)[:60]!r} is not finite", **where)
    return out


def dicom_number(ds, keyword, path=None, patient=None, fraction=None, *, default=None, integer=False,
                 positive=False):
    """One finite number of `keyword` (`default` when absent or empty; required when `default` is None),
    a whole number with `integer`, > 0 with `positive`; InputError naming the file and the tag otherwise."""
    values = dicom_numbers(ds, keyword, 1, path, patient, fraction, required=default is None)
    if values is None:
        return default
    x = float(values[0])
    where = dict(file=path, patient=patient, fraction=fraction)
    if integer and x != int(x):
        raise InputError(f"malformed {tag_name(keyword)}: {x:g} is not a whole number", **where)
    if positive and not x > 0:
        raise InputError(f"malformed {tag_name(keyword)}: {x:g} must be positive", **where)
    return int(x) if integer else x


def sequence_items(ds, keyword, path=None, patient=None, fraction=None, what=None) -> list:
    """The items (datasets) of sequence `keyword` of `ds`, [] when absent. A sequence pydicom cannot parse
    (a truncated or mis-typed one) or an element that is no sequence of items is an InputError naming the
    file and the tag (`what` names the place, e.g. 'ROIContourSequence item 3 ContourSequence')."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    where = dict(file=path, patient=patient, fraction=fraction)
    name = what or tag_name(keyword)
    try:
        value = ds.get(keyword)
    except _conversion_errors() + (OSError, EOFError, KeyError) as e:   # a sequence is parsed on access
        raise InputError(f"unreadable {name}: {e}", **where) from None
    if value is None or value == "":
        return []
    if not isinstance(value, Sequence) or not all(isinstance(item, Dataset) for item in value):
        raise InputError(f"malformed {name}: not a sequence of items", **where)
    return list(value)


def _floats(ds, keyword, n, path, patient, fraction):
    return dicom_numbers(ds, keyword, n, path, patient, fraction)


def direction_from_orientation(iop) -> np.ndarray:
    """3x3 direction matrix (columns: row cosine, column cosine, slice normal) from ImageOrientationPatient."""
    row, col = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
    normal = np.cross(row, col)
    return np.column_stack([row, col, normal])


def sort_slices_by_position(positions, normal):
    """Indices that sort `positions` (n x 3) along `normal`, and the sorted projections (mm)."""
    proj = np.asarray(positions, float) @ np.asarray(normal, float)
    order = np.argsort(proj, kind="stable")
    return order, proj[order]


def check_uniform_spacing(projections, labels, files, what="slice", patient=None, fraction=None) -> float:
    """The spacing (mm) of sorted slice projections; GeometryError on duplicates, gaps (missing
    slices) or uneven spacing. `labels` name each slice in the message (file names, frame numbers);
    `files` is the file reported for each slice."""
    if len(projections) < 2:
        return 0.0
    diffs = np.diff(projections)

    def fault(i, message):
        return GeometryError(message, file=files[i + 1], patient=patient, fraction=fraction)

    for i, d in enumerate(diffs):
        if abs(d) < SPACING_ATOL_MM:
            raise fault(i, f"two {what}s at the same position {projections[i]:.3f} mm "
                           f"({labels[i]} and {labels[i + 1]})")
    step = float(np.median(diffs))
    tol = max(SPACING_ATOL_MM, SPACING_RTOL * abs(step))
    for i, d in enumerate(diffs):
        if abs(d - step) <= tol:
            continue
        ratio = d / step
        if ratio > 1.5 and abs(ratio - round(ratio)) * abs(step) <= max(tol, 0.05 * abs(step)):
            raise fault(i, f"missing {what}: {int(round(ratio)) - 1} {what}(s) absent between {labels[i]} "
                           f"(at {projections[i]:.3f} mm) and {labels[i + 1]} (at {projections[i + 1]:.3f} mm); "
                           f"spacing elsewhere {step:.3f} mm")
        raise fault(i, f"uneven {what} spacing: {d:.3f} mm between {labels[i]} and {labels[i + 1]}, "
                       f"{step:.3f} mm elsewhere")
    return step


def check_modality(ds, expected, path, patient=None, fraction=None):
    """InputError 'wrong modality' when the dataset is not of the expected DICOM Modality."""
    expected = (expected,) if isinstance(expected, str) else tuple(expected)
    got = str(ds.get("Modality", "")).upper()
    if got not in expected:
        raise InputError(f"wrong modality: expected {'/'.join(expected)}, file holds {got or 'no Modality'}",
                         file=path, patient=patient, fraction=fraction)


_NATIVE_LITTLE_ENDIAN = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")   # Implicit / Explicit VR Little Endian


def native_pixels(ds):
    """The stored values of an uncompressed little-endian greyscale slice, read straight from PixelData
    (a view, no copy), or None when the layout needs pydicom's decoder (compressed or big-endian data,
    colour, MONOCHROME1, BitsStored below BitsAllocated, which needs masking or sign extension, short data).
    The values are the ones `ds.pixel_array` returns; pydicom's generic decoder costs ~1 ms per slice,
    a third of a PET series read."""
    meta = getattr(ds, "file_meta", None)
    if meta is None or str(meta.get("TransferSyntaxUID", "")) not in _NATIVE_LITTLE_ENDIAN:
        return None
    try:
        bits, stored = int(ds.BitsAllocated), int(ds.BitsStored)
        rows, columns, signed = int(ds.Rows), int(ds.Columns), int(ds.PixelRepresentation)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        return None
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if samples != 1 or photometric != "MONOCHROME2" or bits not in (8, 16, 32) \
            or stored != bits or signed not in (0, 1) or int(ds.get("NumberOfFrames", 1) or 1) != 1:
        return None
    raw = ds.get("PixelData")
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
    size = rows * columns * dtype.itemsize
    if not isinstance(raw, bytes) or len(raw) not in (size, size + 1):
        return None   # short, or more than one slice's worth: pydicom's decoder says what it is
    return np.frombuffer(raw, dtype=dtype, count=rows * columns).reshape(rows, columns)


def make_image(array_zyx, origin, spacing, direction, metadata=None):
    """SimpleITK image from a (z, y, x) array and explicit LPS geometry."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(array_zyx))
    img.SetOrigin(tuple(float(v) for v in origin))
    img.SetSpacing(tuple(float(v) for v in spacing))
    img.SetDirection(tuple(float(v) for v in np.asarray(direction, float).ravel()))
    for k, v in (metadata or {}).items():
        if v is not None:
            img.SetMetaData(k, str(v))
    return img


def _read_slices(files, modality, patient, fraction, pixels):
    """The datasets of `files`, each checked to be a single-frame image of `modality` (with pixel data
    when `pixels`)."""
    datasets = [read_dataset(f, stop_before_pixels=not pixels, patient=patient, fraction=fraction) for f in files]
    for ds, f in zip(datasets, files):
        check_modality(ds, modality, f, patient, fraction)
        if dicom_number(ds, "NumberOfFrames", f, patient, fraction, default=1, integer=True) > 1:
            raise InputError("multi-frame image files are not supported in an image series "
                             "(export single-frame slices)", file=f, patient=patient, fraction=fraction)
        if pixels and "PixelData" not in ds:
            raise InputError("DICOM image without pixel data", file=f, patient=patient, fraction=fraction)
    return datasets


def _check_one_series(datasets, files, patient, fraction):
    """One SeriesInstanceUID (InputError) and one FrameOfReferenceUID (GeometryError) over all slices."""
    first = datasets[0]
    for keyword, err in (("SeriesInstanceUID", InputError), ("FrameOfReferenceUID", GeometryError)):
        uids = {str(ds.get(keyword, "")) for ds in datasets}
        if len(uids) > 1:
            odd = next(f for ds, f in zip(datasets, files) if str(ds.get(keyword, "")) != str(first.get(keyword, "")))
            raise err(f"files of more than one {keyword} given as one series ({len(uids)} different)",
                      file=odd, patient=patient, fraction=fraction)


def _slice_positions(datasets, files, patient, fraction):
    """(orientation, pixel spacing, (rows, columns)) of the first slice, checked to be the same on every
    slice, and the ImagePositionPatient of each slice."""
    first, f0 = datasets[0], files[0]
    iop0 = _floats(first, "ImageOrientationPatient", 6, f0, patient, fraction)
    ps0 = _pixel_spacing(first, f0, patient, fraction)
    shape0 = _slice_shape(first, f0, patient, fraction)
    positions = []
    for ds, f in zip(datasets, files):
        iop = _floats(ds, "ImageOrientationPatient", 6, f, patient, fraction)
        if np.max(np.abs(iop - iop0)) > ORIENTATION_TOL:
            raise GeometryError(f"slice orientation {iop.round(5).tolist()} differs from "
                                f"{iop0.round(5).tolist()} in {f0.name}", file=f, patient=patient, fraction=fraction)
        ps = _pixel_spacing(ds, f, patient, fraction)
        if np.max(np.abs(ps - ps0)) > SPACING_ATOL_MM * 1e-2 + 1e-6:
            raise GeometryError(f"pixel spacing {ps.tolist()} differs from {ps0.tolist()} in {f0.name}",
                                file=f, patient=patient, fraction=fraction)
        shape = _slice_shape(ds, f, patient, fraction)
        if shape != shape0:
            raise GeometryError(f"slice size {shape[0]}x{shape[1]} differs from {shape0[0]}x{shape0[1]} "
                                f"in {f0.name}", file=f, patient=patient, fraction=fraction)
        positions.append(_floats(ds, "ImagePositionPatient", 3, f, patient, fraction))
    return iop0, ps0, shape0, positions


def _pixel_spacing(ds, path, patient, fraction) -> np.ndarray:
    """PixelSpacing (row spacing, column spacing) in mm: two finite positive numbers (InputError otherwise)."""
    spacing = _floats(ds, "PixelSpacing", 2, path, patient, fraction)
    check_spacing(spacing, tag_name("PixelSpacing"), path, patient, fraction)
    return spacing


def check_spacing(spacing_mm, what, path=None, patient=None, fraction=None) -> None:
    """Voxel spacings within SPACING_RANGE_MM (a spacing of 0, negative, 1e-300 or 1e300 mm is a broken
    header, and SimpleITK cannot even build its direction matrix from it): GeometryError otherwise."""
    low, high = SPACING_RANGE_MM
    values = np.atleast_1d(np.asarray(spacing_mm, dtype=np.float64))
    if not ((values >= low) & (values <= high)).all():
        raise GeometryError(f"{what} {[float(f'{v:.6g}') for v in values]} mm is outside {low:g}-{high:g} mm",
                            file=path, patient=patient, fraction=fraction)


def _slice_shape(ds, path, patient, fraction) -> tuple:
    """(Rows, Columns): whole numbers >= 1 (InputError otherwise)."""
    return tuple(dicom_number(ds, k, path, patient, fraction, integer=True, positive=True)
                 for k in ("Rows", "Columns"))


def _sort_along_normal(datasets, files, positions, direction, patient, fraction):
    """Files, datasets and positions sorted along the slice normal, and the slice spacing (mm; 0 for a
    single slice); the slices must lie on one line along the normal, evenly spaced."""
    order, proj = sort_slices_by_position(positions, direction[:, 2])
    files = [files[i] for i in order]
    datasets = [datasets[i] for i in order]
    positions = [positions[i] for i in order]
    # Positions must lie on one line along the normal (no in-plane shift between slices).
    in_plane = np.array([(p - positions[0]) @ direction[:, :2] for p in positions])
    if np.max(np.abs(in_plane)) > SPACING_ATOL_MM * 10:
        bad = int(np.argmax(np.max(np.abs(in_plane), axis=1)))
        raise GeometryError("slice positions are shifted in-plane (sheared or mixed series)",
                            file=files[bad], patient=patient, fraction=fraction)
    step = check_uniform_spacing(proj, [f.name for f in files], files, patient=patient, fraction=fraction)
    return files, datasets, positions, step


def _stack_pixels(datasets, files, shape, patient, fraction):
    """float32 (z, y, x) volume of the sorted slices, rescale slope and intercept applied in float64."""
    volume = np.empty((len(datasets),) + shape, dtype=np.float32)
    for z, (ds, f) in enumerate(zip(datasets, files)):
        try:
            pixels = native_pixels(ds)
            pixels = ds.pixel_array if pixels is None else pixels
        except Exception as e:  # noqa: BLE001 - pydicom raises many types for undecodable data
            raise InputError(f"cannot decode pixel data: {e}", file=f, patient=patient, fraction=fraction) from None
        if pixels.shape != shape:
            raise InputError(f"pixel data of shape {'x'.join(map(str, pixels.shape))} does not match Rows x Columns "
                             f"{shape[0]}x{shape[1]}", file=f, patient=patient, fraction=fraction)
        # Type 1 in the CT and PET image modules: a missing intercept read as 0 made every HU 1024 too high
        slope = dicom_number(ds, "RescaleSlope", f, patient, fraction)
        intercept = dicom_number(ds, "RescaleIntercept", f, patient, fraction)
        if slope == 0:
            raise InputError(f"malformed {tag_name('RescaleSlope')}: 0 would make every voxel "
                             f"{intercept:g}", file=f, patient=patient, fraction=fraction)
        with np.errstate(over="ignore"):   # checked just below
            volume[z] = pixels.astype(np.float64) * slope + intercept
        if not np.isfinite(volume[z]).all():
            raise InputError(f"rescaled values are not finite in float32 ({tag_name('RescaleSlope')} {slope:g}, "
                             f"{tag_name('RescaleIntercept')} {intercept:g})", file=f, patient=patient,
                             fraction=fraction)
    return volume


def _check_volume_memory(modality, shape_zyx, pixels, path, patient, fraction) -> None:
    """Refuse (InputError, COMPASSLib.memory) a series whose headers announce more voxels than fit: the
    float32 volume and SimpleITK's copy of it (uint8 for a headers-only grid), before allocating them."""
    from COMPASSLib import memory

    memory.check(f"{modality} series of {' x '.join(str(n) for n in shape_zyx[::-1])} voxels (Columns x Rows x "
                 "slices)", memory.grid_bytes(shape_zyx, 8 if pixels else 2),
                 hint="check Rows (0028,0010), Columns (0028,0011) and the files of the series",
                 error=InputError, file=path, patient=patient, fraction=fraction)


def read_series(files, modality, patient=None, fraction=None, pixels=True):
    """Read one single-frame DICOM image series.

    Returns (image, datasets): `image` is float32 with rescale slope and intercept applied per slice
    (computed in float64), LPS geometry exact; `datasets` are the sorted pydicom datasets so callers
    can read modality-specific tags (e.g. PET decay information). With `pixels=False` only the
    headers are read (same checks) and `image` is an all-zero uint8 grid: a cheap reference grid.
    """
    files = as_file_list(files)
    if not files:
        raise InputError(f"empty {modality} series (no files)", patient=patient, fraction=fraction)
    datasets = _read_slices(files, modality, patient, fraction, pixels)
    first, f0 = datasets[0], files[0]
    _check_one_series(datasets, files, patient, fraction)
    iop0, ps0, shape0, positions = _slice_positions(datasets, files, patient, fraction)

    direction = direction_from_orientation(iop0)
    if not (np.isfinite(direction).all() and abs(np.linalg.det(direction) - 1.0) <= 1e-3
            and np.allclose(direction.T @ direction, np.eye(3), atol=1e-3)):
        raise GeometryError("ImageOrientationPatient is not two orthogonal unit vectors",
                            file=f0, patient=patient, fraction=fraction)
    files, datasets, positions, step = _sort_along_normal(datasets, files, positions, direction, patient, fraction)
    if step == 0.0:  # a single slice: the slice thickness is the best thickness we know
        step = dicom_number(first, "SliceThickness", f0, patient, fraction, default=1.0, positive=True)
    check_spacing(step, "slice spacing" if len(datasets) > 1 else tag_name("SliceThickness"), f0, patient, fraction)

    _check_volume_memory(modality, (len(datasets),) + shape0, pixels, f0, patient, fraction)
    volume = _stack_pixels(datasets, files, shape0, patient, fraction) if pixels else \
        np.zeros((len(datasets),) + shape0, dtype=np.uint8)
    metadata = {"Modality": str(first.get("Modality", "")),
                "FrameOfReferenceUID": str(first.get("FrameOfReferenceUID", "")),
                "SeriesInstanceUID": str(first.get("SeriesInstanceUID", "")),
                "StudyInstanceUID": str(first.get("StudyInstanceUID", "")),
                "PatientID": str(first.get("PatientID", ""))}
    image = make_image(volume, positions[0], (ps0[1], ps0[0], step), direction, metadata)
    return image, datasets
