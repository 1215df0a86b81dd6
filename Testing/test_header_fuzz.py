"""DICOM header fuzzer (issue 15): real CT, PET, RTDOSE and RTSTRUCT headers of the synthetic cohort and of
../shared/data (dicompyler-core's example plan, IBSI STS_002) mutated by the seeded mutator of
Testing/corpus/fuzz.py (drop, duplicate, retype, truncate, misvalue) and fed to the COMPASS reader of their
modality. Every outcome must be a read that passes a plausibility check (finite, positive geometry; finite
voxels; dose >= 0; masks on the reference grid) or a CompassError: any other exception is a failure.

Budget: COMPASS_FUZZ_BUDGET mutations per modality (default 500, < 60 s in all); COMPASS_FUZZ_SEED picks
another sequence (default 0). Small bases keep it fast: 3 slices of each CT/PET series, the dicompyler RTDOSE
cut to 4 frames, structure sets cut to 3 ROIs with at most 8 contours each and 3 image references (all
other tags as exported).
"""
from __future__ import annotations

import collections
import io
import os
import random
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from COMPASSLib import io as cio
from COMPASSLib.errors import CompassError
from COMPASSLib.io.planning_dvh import read_planning_dvhs
from COMPASSLib.io.rtstruct import list_rois
from corpus import fuzz

BUDGET = int(os.environ.get("COMPASS_FUZZ_BUDGET", "500"))
SEED = int(os.environ.get("COMPASS_FUZZ_SEED", "0"))
MODALITIES = ("CT", "PT", "RTDOSE", "RTSTRUCT")


# --- bases: small real files, each a list of file bytes (a series) with how to read it ------------------
def _slices(files, n=3):
    """n consecutive slices from the middle of a series (sorted by position), as bytes."""
    ds = [(pydicom.dcmread(f, stop_before_pixels=True), f) for f in files]
    ds.sort(key=lambda t: float(t[0].ImagePositionPatient[2]))
    mid = max(0, len(ds) // 2 - n // 2)
    return [Path(f).read_bytes() for _, f in ds[mid:mid + n]]


def _cropped_dose(path, frames=4):
    ds = pydicom.dcmread(path)
    per_frame = int(ds.Rows) * int(ds.Columns) * int(ds.BitsAllocated) // 8
    ds.PixelData = ds.PixelData[: frames * per_frame]
    ds.NumberOfFrames = frames
    ds.GridFrameOffsetVector = list(ds.GridFrameOffsetVector)[:frames]
    if "DVHSequence" in ds:   # two short planning-system DVHs (Borders, Nodes) for io.planning_dvh
        ds.DVHSequence = pydicom.Sequence([d for d in ds.DVHSequence if len(d.DVHData) < 40])
    return _bytes(ds)


def _cropped_structures(path, keep=3, contours=8):
    ds = pydicom.dcmread(path)
    counts = {int(rc.ReferencedROINumber): len(rc.get("ContourSequence", [])) for rc in ds.ROIContourSequence}
    numbers = sorted((n for n, c in counts.items() if c), key=lambda n: counts[n])[:keep]
    ds.StructureSetROISequence = pydicom.Sequence([r for r in ds.StructureSetROISequence
                                                   if int(r.ROINumber) in numbers])
    ds.ROIContourSequence = pydicom.Sequence([rc for rc in ds.ROIContourSequence
                                              if int(rc.ReferencedROINumber) in numbers])
    for rc in ds.ROIContourSequence:
        rc.ContourSequence = pydicom.Sequence(list(rc.ContourSequence)[:contours])
        for c in rc.ContourSequence:        # image references: one each (parsing them is most of a read)
            if "ContourImageSequence" in c:
                c.ContourImageSequence = pydicom.Sequence(list(c.ContourImageSequence)[:1])
    for ref in ds.get("ReferencedFrameOfReferenceSequence", []):
        for study in ref.get("RTReferencedStudySequence", []):
            for series in study.get("RTReferencedSeriesSequence", []):
                if "ContourImageSequence" in series:
                    series.ContourImageSequence = pydicom.Sequence(list(series.ContourImageSequence)[:3])
    if "RTROIObservationsSequence" in ds:
        ds.RTROIObservationsSequence = pydicom.Sequence(
            [o for o in ds.RTROIObservationsSequence if int(o.ReferencedROINumber) in numbers])
    return _bytes(ds)


def _bytes(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def bases(small_cohort, shared_data):
    from COMPASSLib.cohort import Cohort

    c = Cohort.load(small_cohort)
    p = c.patients[0]
    f1 = p.fractions[0]
    sts, dicompyler = shared_data / "ibsi" / "sts" / "STS_002", shared_data / "dicompyler_example"
    synthetic_ct = cio.read_grid(c.paths(p.planning.ct), "ct")
    sts_ct = cio.read_grid(sorted((sts / "CT" / "image").glob("*.dcm")), "ct")
    dicompyler_grid = cio.read_grid([dicompyler / "rtdose.dcm"], "dose")
    return {
        "CT": [("synthetic", _slices(c.paths(f1.ct)), None),
               ("STS_002", _slices(sorted((sts / "CT" / "image").glob("*.dcm"))), None),
               ("dicompyler", [(dicompyler / "ct.0.dcm").read_bytes()], None)],
        "PT": [("synthetic", _slices(c.paths(f1.pet)), None),
               ("STS_002", _slices(sorted((sts / "PET" / "image").glob("*.dcm"))), None)],
        "RTDOSE": [("synthetic", [c.path(f1.dose[0]).read_bytes()], None),
                   ("dicompyler", [_cropped_dose(dicompyler / "rtdose.dcm")], None)],
        "RTSTRUCT": [("synthetic", [_cropped_structures(c.path(p.planning.rtstruct[0]))], synthetic_ct),
                     ("STS_002", [_cropped_structures(sts / "CT" / "mask" / "RS.dcm")], sts_ct),
                     ("dicompyler", [_cropped_structures(dicompyler / "rtss.dcm")], dicompyler_grid)],
    }


# --- reading and judging ------------------------------------------------------------------------------
def _plausible_image(image, what, nonnegative=False):
    geometry = np.array(image.GetSpacing() + image.GetOrigin() + image.GetDirection(), float)
    assert np.isfinite(geometry).all(), f"{what}: non-finite geometry"
    assert min(image.GetSpacing()) > 0, f"{what}: spacing {image.GetSpacing()}"
    values = sitk.GetArrayViewFromImage(image)
    assert np.isfinite(values).all(), f"{what}: non-finite voxels"
    if nonnegative:
        assert values.min() >= 0, f"{what}: negative dose {values.min()}"


def _read(modality, files, reference):
    where = dict(patient="FUZZ", fraction=1)
    if modality == "CT":
        _plausible_image(cio.read_volume(files, "ct", **where), "CT")
    elif modality == "PT":
        _plausible_image(cio.read_volume(files, "pet", **where), "PET")
    elif modality == "RTDOSE":
        _plausible_image(cio.read_volume(files, "dose", **where), "RTDOSE", nonnegative=True)
        for number, curve in read_planning_dvhs(files[0], **where)[0].items():
            v = curve.volume_pct
            assert np.isfinite(curve.dose_gy).all() and np.isfinite(v).all(), f"DVH of ROI {number}: not finite"
            assert v.min() >= 0 and abs(v[0] - 100) < 1e-6, f"DVH of ROI {number}: {v[:3]}"
    else:
        list_rois(files[0], **where)
        for name, mask in cio.read_structures(files, reference, **where).items():
            assert mask.GetSize() == reference.GetSize(), f"RTSTRUCT {name}: mask not on the reference grid"
        _solids(*cio.read_structures(files, reference, with_contours=True, **where), reference)


def _solids(masks, contours, reference):
    """What `compass dvh` does by default with each ROI: the solid between its contour planes, sampled on the
    reference grid (a zero dose there), whose volume must be finite and no larger than the grid."""
    from COMPASSLib import dose
    from COMPASSLib.io.shape_interpolation import BetweenPlanes

    zero = sitk.Image(reference.GetSize(), sitk.sitkFloat32)
    zero.CopyInformation(reference)
    grid_cc = dose.voxel_volume_cc(zero) * float(np.prod(reference.GetSize()))
    for name in masks:
        solid = BetweenPlanes(contours[name], zero, 2, 2, name)
        volume = dose.supersampled_dvh(zero, solid, 2, slice_fraction=solid.slice_fraction).volume_cc
        assert np.isfinite(volume) and 0 < volume <= grid_cc * 1.001, f"RTSTRUCT {name}: solid of {volume} cc"


def _mutated(base, rng, modality, folder):
    """Files of `base` with one mutation (on one slice, or on every slice of a series 3 times in 10)."""
    target = rng.randrange(len(base))
    drawn = pydicom.dcmread(io.BytesIO(base[target]))
    mutation = fuzz.draw(drawn, rng, fuzz.FOCUS[modality])
    every = len(base) > 1 and rng.random() < 0.3
    paths = []
    for i, raw in enumerate(base):
        path = folder / f"{i:03d}.dcm"
        if i == target or every:
            ds = drawn if i == target else pydicom.dcmread(io.BytesIO(raw))
            fuzz.apply(ds, mutation)
            ds.save_as(path)
        else:
            path.write_bytes(raw)
        paths.append(path)
    return mutation, paths, every


def fuzz_modality(modality, sources, budget, seed, folder):
    """Counter of outcomes ('read', CompassError class names, 'EXCEPTION <type>', 'IMPLAUSIBLE') and
    examples of the failures."""
    rng = random.Random(f"{seed}-{modality}")
    counts, failures = collections.Counter(), []
    for n in range(budget):
        source, base, reference = sources[n % len(sources)]
        case = folder / f"{modality}-{n:05d}"
        case.mkdir(parents=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                mutation, paths, every = _mutated(base, rng, modality, case)
            except Exception:   # noqa: BLE001 - pydicom cannot write this mutation: not a reader outcome
                counts["unwritable"] += 1
                continue
            try:
                _read(modality, paths, reference)
                counts["read"] += 1
            except CompassError as e:
                counts[type(e).__name__] += 1
            except AssertionError as e:
                counts["IMPLAUSIBLE"] += 1
                failures.append(f"{modality} {source}: {mutation}{' (every slice)' if every else ''}: implausible "
                                f"read: {e}")
            except Exception as e:  # noqa: BLE001 - what the fuzzer is looking for
                counts[f"EXCEPTION {type(e).__name__}"] += 1
                frame = traceback.extract_tb(e.__traceback__)[-1]
                failures.append(f"{modality} {source}: {mutation}{' (every slice)' if every else ''}: "
                                f"{type(e).__name__}: {e} at {Path(frame.filename).name}:{frame.lineno}")
    return counts, failures


def test_header_mutations_give_a_read_or_a_compass_error(bases, tmp_path, capsys):
    t0 = time.perf_counter()
    report, failures = [], []
    for modality in MODALITIES:
        t = time.perf_counter()
        counts, found = fuzz_modality(modality, bases[modality], BUDGET, SEED, tmp_path)
        tried = BUDGET - counts["unwritable"]
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        report.append(f"{modality:<8} {tried:>5} mutations read in {time.perf_counter() - t:5.1f} s: {outcomes}")
        failures += found
    with capsys.disabled():
        print(f"\nheader fuzzer (seed {SEED}, {BUDGET} mutations per modality, {time.perf_counter() - t0:.1f} s)")
        for line in report:
            print("  " + line)
        for line in failures[:40]:
            print("  FAIL " + line)
    assert not failures, f"{len(failures)} mutation(s) gave an exception other than a CompassError or an " \
                         f"implausible read:\n" + "\n".join(failures[:40])
