"""Voxelwise texture maps (COMPASSLib.features.texture_maps) against pyradiomics' own voxel-based
extraction on the same inputs, and against the IBSI digital phantom's published reference values.

pyradiomics runs here on small ROIs only (it costs 1-50 ms per voxel); equality is to rounding:
relative difference <= 1e-10, absolute <= 1e-12 for values near zero, NaN where pyradiomics has NaN.
"""
from __future__ import annotations

import csv
import json
import logging

import numpy as np
import pytest
import SimpleITK as sitk

from COMPASSLib.errors import FeatureError
from COMPASSLib.features.texture_maps import (available_features, organ_texture_maps, parse_features,
                                              summarise_map, texture_maps)

ALL = ["firstorder:*", "glcm:*"]
RTOL, ATOL = 1e-10, 1e-12
# Asked for without Imc1/Imc2/MCC, these come from a shorter path (one-way pair list): test it too.
CELL_FEATURES = ["glcm:JointEntropy", "glcm:JointEnergy", "glcm:MaximumProbability"]
# MCC is the square root of an eigenvalue. Where that eigenvalue is 0 (a direction whose joint
# distribution is a product of its marginals), pyradiomics' general eigen-solver returns rounding
# noise of ~1e-17 and MCC gets its square root, up to ~1e-8 for that direction; we return 0.
MCC_ATOL = 1e-8


def pyradiomics_maps(image, mask, radius, bin_width, voxel_batch=-1, classes=("firstorder", "glcm")):
    """pyradiomics' voxel-based maps pasted back on the full grid: {'glcm:Contrast': array, ...}.
    (The extractor crops to the mask's bounding box padded by the radius.)"""
    import radiomics
    from radiomics import featureextractor

    radiomics.setVerbosity(logging.ERROR)
    ex = featureextractor.RadiomicsFeatureExtractor(binWidth=bin_width, kernelRadius=radius, force2D=False,
                                                    voxelBatch=voxel_batch, voxelBased=True)
    ex.disableAllFeatures()
    for c in classes:
        ex.enableFeatureClassByName(c)
    result = ex.execute(image, mask, voxelBased=True)
    shape = sitk.GetArrayFromImage(image).shape
    out = {}
    for key, value in result.items():
        if isinstance(value, sitk.Image):
            _, cls, name = key.split("_", 2)
            arr = sitk.GetArrayFromImage(value)
            z, y, x = image.TransformPhysicalPointToIndex(value.GetOrigin())[::-1]
            full = np.zeros(shape)
            full[z:z + arr.shape[0], y:y + arr.shape[1], x:x + arr.shape[2]] = arr
            out[f"{cls}:{name}"] = full
    return out


def assert_equal_maps(ours: dict, ref: dict, roi: np.ndarray, skip=()):
    names = [k for k in ref if k not in skip]
    assert set(names) <= set(ours), f"pyradiomics features we do not compute: {set(names) - set(ours)}"
    failures = []
    for k in names:
        a = ours[k]
        a = sitk.GetArrayFromImage(a) if isinstance(a, sitk.Image) else a
        b = ref[k]
        if not np.array_equal(a[~roi], b[~roi]):
            failures.append(f"{k}: outside-ROI values differ")
        a, b = a[roi], b[roi]
        if not np.array_equal(np.isnan(a), np.isnan(b)):
            failures.append(f"{k}: NaN at {int((np.isnan(a) != np.isnan(b)).sum())} voxels differs")
            continue
        ok = np.isclose(a, b, rtol=RTOL, atol=MCC_ATOL if k == "glcm:MCC" else ATOL, equal_nan=True)
        if not ok.all():
            i = np.argmax(~ok)
            failures.append(f"{k}: {int((~ok).sum())} voxels differ, e.g. {a[i]!r} vs {b[i]!r}")
    assert not failures, "\n".join(failures)


def _image(arr, spacing=(2.0, 2.0, 3.0)):
    im = sitk.GetImageFromArray(arr)
    im.SetSpacing(spacing)
    im.SetOrigin((-10.0, 4.0, 7.5))
    return im


def _mask_like(arr, image):
    m = sitk.GetImageFromArray(arr.astype(np.uint8))
    m.CopyInformation(image)
    return m


def synthetic_dose(shape=(12, 14, 16), seed=0):
    """A smooth dose field (Gy) with a hot spot and a little noise, and an ellipsoid organ."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:shape[0], :shape[1], :shape[2]]
    dose = (40 * np.exp(-((z - 6) ** 2 + (y - 7) ** 2 + (x - 8) ** 2) / 60)
            + 25 * np.exp(-((z - 4) ** 2 + (y - 9) ** 2 + (x - 5) ** 2) / 4)
            + rng.normal(0, 0.5, shape))
    organ = ((z - 6) / 5.5) ** 2 + ((y - 7) / 6) ** 2 + ((x - 8) / 7) ** 2 < 1
    return dose.astype(np.float32), organ


# --------------------------------------------------------------------------- equality with pyradiomics

def test_synthetic_dose_radius1_equals_pyradiomics():
    dose, organ = synthetic_dose()
    image = _image(dose)
    mask = _mask_like(organ, image)
    ref = pyradiomics_maps(image, mask, radius=1, bin_width=2.0)
    ours = texture_maps(image, mask, ALL, radius=1, bin_width=2.0)
    assert set(ours) == {f"{c}:{n}" for c, names in available_features().items() for n in names}
    assert len(ref) == len(ours) == 18 + 24
    assert_equal_maps(ours, ref, organ)
    cells = texture_maps(image, mask, CELL_FEATURES, radius=1, bin_width=2.0)
    assert_equal_maps(cells, {k: ref[k] for k in CELL_FEATURES}, organ)
    # small chunks of kernels sorted by span: the flat ones take the dense joint-cell path
    small = texture_maps(image, mask, ALL, radius=1, bin_width=2.0, chunk_voxels=64)
    assert_equal_maps(small, ref, organ)
    # a map is an image on the input's grid
    assert ours["glcm:Contrast"].GetSpacing() == image.GetSpacing()
    assert ours["glcm:Contrast"].GetOrigin() == image.GetOrigin()


def test_bed_map_radius2_equals_pyradiomics(monkeypatch):
    """BED (alpha/beta 3 Gy) of a synthetic fraction dose, radius 2, ~30 grey levels in the ROI."""
    from COMPASSLib.dose import bed

    dose, _ = synthetic_dose(shape=(10, 12, 12), seed=3)
    bed_gy = bed(dose / 4.0, 3.0)
    z, y, x = np.mgrid[:10, :12, :12]
    organ = ((z - 5) / 3.5) ** 2 + ((y - 6) / 4) ** 2 + ((x - 6) / 4) ** 2 < 1
    image = _image(bed_gy.astype(np.float32))
    mask = _mask_like(organ, image)
    vals = bed_gy[organ]
    width = float((vals.max() - vals.min()) / 30)
    ref = pyradiomics_maps(image, mask, radius=2, bin_width=width)
    ours = texture_maps(image, mask, ALL, radius=2, bin_width=width)
    assert_equal_maps(ours, ref, organ)
    small = texture_maps(image, mask, ALL, radius=2, bin_width=width, chunk_voxels=32)
    assert_equal_maps(small, ref, organ)
    # the torch versions of the compiled CPU steps (what CUDA, or a CPU without numba, runs: joint
    # cells by a sort, MCC by LAPACK) equal to pyradiomics too
    from COMPASSLib.features import _glcm_cpu

    assert _glcm_cpu.available()  # numba is a pinned requirement: the default above is the compiled one
    monkeypatch.setattr(_glcm_cpu, "available", lambda: False)
    torch_only = texture_maps(image, mask, ["glcm:*"], radius=2, bin_width=width)
    assert_equal_maps(torch_only, {k: v for k, v in ref.items() if k.startswith("glcm:")}, organ)


def test_synthetic_cohort_bed_heart_equals_pyradiomics(small_cohort):
    """Cumulative BED after fraction 2 in the heart of a synthetic-cohort patient (real DICOM)."""
    from COMPASSLib.dose import cumulative_bed
    from COMPASSLib.ingest import load_fraction

    f1 = load_fraction(small_cohort, "SYN001", 1)
    f2 = load_fraction(small_cohort, "SYN001", 2)
    bed_img = cumulative_bed([f1.dose, f2.dose], 3.0)[-1]
    heart = f2.masks["Heart"]
    roi = sitk.GetArrayFromImage(heart) > 0
    # a slab of the heart keeps pyradiomics' run time small
    zs = np.nonzero(roi.any((1, 2)))[0]
    roi[: zs[len(zs) // 2] - 1] = False
    roi[zs[len(zs) // 2] + 2:] = False
    mask = _mask_like(roi, bed_img)
    vals = sitk.GetArrayFromImage(bed_img)[roi]
    width = float((vals.max() - vals.min()) / 40) or 1.0
    # an organ slab has kernels with empty directions: compare with pyradiomics' per-voxel batches
    # (see test_ragged_roi_per_voxel_semantics_equal_pyradiomics_voxelbatch1)
    ref = pyradiomics_maps(bed_img, mask, radius=1, bin_width=width, voxel_batch=1)
    ours = texture_maps(bed_img, mask, ALL, radius=1, bin_width=width)
    assert_equal_maps(ours, ref, roi)


def test_lung1_subroi_equals_pyradiomics(shared_data):
    """pyradiomics' own lung1 CT case, a small block of its tumour label, default bin width 25 HU."""
    image = sitk.ReadImage(str(shared_data / "pyradiomics/data/lung1_image.nrrd"))
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(shared_data / "pyradiomics/data/lung1_label.nrrd")))
    roi = label == 1
    z, y, x = (int(np.median(a)) for a in np.nonzero(roi))
    block = np.zeros_like(roi)
    block[z - 2:z + 2, y - 5:y + 5, x - 5:x + 5] = True
    roi &= block
    assert 100 < roi.sum() < 600
    # both tools get the same small crop around the block (a masked kernel never sees the rest)
    image = image[x - 8:x + 8, y - 8:y + 8, z - 4:z + 4]
    roi = roi[z - 4:z + 4, y - 8:y + 8, x - 8:x + 8]
    mask = _mask_like(roi, image)
    ref = pyradiomics_maps(image, mask, radius=1, bin_width=25)
    ours = texture_maps(image, mask, ALL, radius=1, bin_width=25)
    assert_equal_maps(ours, ref, roi)


def test_ragged_roi_per_voxel_semantics_equal_pyradiomics_voxelbatch1():
    """A ragged ROI: kernels with missing directions and voxels without any GLCM pair (NaN).
    pyradiomics drops empty directions per batch of voxels, so its batch-of-one run is the per-voxel
    definition (with bigger batches its JointAverage becomes NaN and MCC fails to 0 on such ROIs)."""
    dose, _ = synthetic_dose(shape=(9, 10, 10), seed=5)
    rng = np.random.default_rng(7)
    z, y, x = np.mgrid[:9, :10, :10]
    organ = (rng.random(dose.shape) < 0.45) & (((z - 4) / 3.5) ** 2 + ((y - 5) / 4) ** 2 + ((x - 5) / 4) ** 2 < 1)
    organ[0, 0, 0] = True  # an island: a kernel without any pair
    organ[8, 0, 9] = organ[8, 1, 8] = True  # a diagonal pair: 1 direction of 13
    image = _image(dose)
    mask = _mask_like(organ, image)
    ref = pyradiomics_maps(image, mask, radius=1, bin_width=2.0, voxel_batch=1)
    ours = texture_maps(image, mask, ALL, radius=1, bin_width=2.0)
    assert np.isnan(sitk.GetArrayFromImage(ours["glcm:Contrast"])[organ]).any(), "no pair-less voxel tested"
    assert_equal_maps(ours, ref, organ)
    cells = texture_maps(image, mask, CELL_FEATURES, radius=1, bin_width=2.0)
    assert_equal_maps(cells, {k: ref[k] for k in CELL_FEATURES}, organ)
    # small chunks of kernels sorted by span: the flat ones take the dense joint-cell path
    small = texture_maps(image, mask, ALL, radius=1, bin_width=2.0, chunk_voxels=64)
    assert_equal_maps(small, ref, organ)


# --------------------------------------------------------------------------- IBSI digital phantom

# pyradiomics name -> IBSI-1 reference row (family, feature). GLCM rows: "3D, averaged" = one matrix
# per direction (13 in 3D), features averaged, which is pyradiomics' definition (weightingNorm None).
# First order: "Statistics" rows on the raw intensities; Entropy/Uniformity: "Intensity histogram"
# rows (the phantom is already discretised: bin width 1 reproduces its levels).
IBSI_ROWS = {
    "firstorder:Mean": ("Statistics", "Mean"), "firstorder:Variance": ("Statistics", "Variance"),
    "firstorder:Skewness": ("Statistics", "Skewness"), "firstorder:Median": ("Statistics", "Median"),
    "firstorder:Minimum": ("Statistics", "Minimum"), "firstorder:10Percentile": ("Statistics", "10th percentile"),
    "firstorder:90Percentile": ("Statistics", "90th percentile"), "firstorder:Maximum": ("Statistics", "Maximum"),
    "firstorder:InterquartileRange": ("Statistics", "Interquartile range"),
    "firstorder:Range": ("Statistics", "Range"),
    "firstorder:MeanAbsoluteDeviation": ("Statistics", "Mean absolute deviation"),
    "firstorder:RobustMeanAbsoluteDeviation": ("Statistics", "Robust mean absolute deviation"),
    "firstorder:Energy": ("Statistics", "Energy"), "firstorder:RootMeanSquared": ("Statistics", "Root mean square"),
    "firstorder:Entropy": ("Intensity histogram", "Entropy"),
    "firstorder:Uniformity": ("Intensity histogram", "Uniformity"),
    "glcm:MaximumProbability": ("GLCM", "Joint maximum"), "glcm:JointAverage": ("GLCM", "Joint average"),
    "glcm:SumSquares": ("GLCM", "Joint variance"), "glcm:JointEntropy": ("GLCM", "Joint entropy"),
    "glcm:DifferenceAverage": ("GLCM", "Difference average"),
    "glcm:DifferenceVariance": ("GLCM", "Difference variance"),
    "glcm:DifferenceEntropy": ("GLCM", "Difference entropy"), "glcm:SumAverage": ("GLCM", "Sum average"),
    "glcm:ClusterTendency": ("GLCM", "Sum variance"), "glcm:SumEntropy": ("GLCM", "Sum entropy"),
    "glcm:JointEnergy": ("GLCM", "Angular second moment"), "glcm:Contrast": ("GLCM", "Contrast"),
    "glcm:Id": ("GLCM", "Inverse difference"), "glcm:Idn": ("GLCM", "Normalised inverse difference"),
    "glcm:Idm": ("GLCM", "Inverse difference moment"),
    "glcm:Idmn": ("GLCM", "Normalised inverse difference moment"),
    "glcm:InverseVariance": ("GLCM", "Inverse variance"), "glcm:Correlation": ("GLCM", "Correlation"),
    "glcm:Autocorrelation": ("GLCM", "Autocorrelation"), "glcm:ClusterShade": ("GLCM", "Cluster shade"),
    "glcm:ClusterProminence": ("GLCM", "Cluster prominence"),
    "glcm:Imc1": ("GLCM", "Information correlation 1"), "glcm:Imc2": ("GLCM", "Information correlation 2"),
}


def _ibsi_reference(shared_data):
    path = shared_data / "ibsi/reference_values/ibsi_1_reference_values_digital_phantom.csv"
    with open(path, encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    family_names = {"GLCM": "Co-occurrence matrix (3D, averaged)"}
    ref = {}
    for key, (family, feature) in IBSI_ROWS.items():
        family = family_names.get(family, family)
        match = [r for r in rows if r["family"] == family and r["feature"] == feature]
        assert len(match) == 1, (family, feature)
        ref[key] = float(match[0]["reference value"])
    return ref


def _sig3(v: float) -> float:
    return float(f"{v:.3g}")


def test_ibsi_phantom_whole_roi_kernel_reproduces_reference(shared_data):
    d = shared_data / "ibsi/digital_phantom/nifti"
    image = sitk.ReadImage(str(d / "image/phantom.nii.gz"))
    mask = sitk.ReadImage(str(d / "mask/mask.nii.gz"))
    roi = sitk.GetArrayFromImage(mask) > 0
    # radius 4 voxels: every kernel covers the whole 5x4x4 phantom, so every map voxel is the ROI value
    maps = texture_maps(image, mask, ALL, radius=4, bin_width=1)
    ref = _ibsi_reference(shared_data)
    wrong = []
    for key, expected in ref.items():
        v = sitk.GetArrayFromImage(maps[key])[roi]
        assert np.ptp(v) <= 1e-12 * max(1.0, abs(v[0])), f"{key} not constant over the phantom"
        if key == "firstorder:Kurtosis":
            continue
        if _sig3(v[0]) != _sig3(expected):
            wrong.append(f"{key}: {v[0]:.4g} vs IBSI {expected}")
    # IBSI kurtosis is the excess kurtosis; pyradiomics' is not (+3)
    kurt = sitk.GetArrayFromImage(maps["firstorder:Kurtosis"])[roi][0]
    assert _sig3(kurt - 3) == -0.355
    assert not wrong, "\n".join(wrong)


# --------------------------------------------------------------------------- behaviour

def test_chunking_device_and_inputs_untouched():
    dose, organ = synthetic_dose(shape=(8, 9, 10), seed=2)
    before = dose.copy()
    whole = texture_maps(dose, organ, ALL, radius=1, bin_width=2.0, threads=1)
    again = texture_maps(dose, organ, ALL, radius=1, bin_width=2.0, threads=1)
    chunked = texture_maps(dose, organ, ALL, radius=1, bin_width=2.0, chunk_voxels=7, threads=1)
    for k in whole:
        assert np.array_equal(whole[k], again[k], equal_nan=True), k  # bitwise reproducible on CPU
        # chunk size only changes torch's vectorised summation order: last-bit differences
        np.testing.assert_allclose(chunked[k], whole[k], rtol=1e-14, atol=1e-15, err_msg=k)
    assert np.array_equal(dose, before)
    assert isinstance(whole["glcm:Contrast"], np.ndarray) and whole["glcm:Contrast"].dtype == np.float64
    # chunks side by side on two threads: bitwise the maps of one thread, progress in order, torch's
    # thread setting left as it was
    import torch

    threads_before = torch.get_num_threads()
    calls = []
    threaded = texture_maps(dose, organ, ALL, radius=1, bin_width=2.0, chunk_voxels=50, threads=2,
                            progress=lambda fraction_done, message: calls.append((fraction_done, message)))
    threaded_again = texture_maps(dose, organ, ALL, radius=1, bin_width=2.0, chunk_voxels=50, threads=2)
    assert torch.get_num_threads() == threads_before
    nvox = int(organ.sum())
    assert len(calls) == 1 + -(-nvox // 50) and calls[-1][1] == f"texture maps: {nvox}/{nvox} voxels"
    assert [c[0] for c in calls] == sorted(c[0] for c in calls) and calls[0][0] == 0 and calls[-1][0] == 1.0
    # the progress protocol: False from the callback cancels the map
    from COMPASSLib.progress import Cancelled

    with pytest.raises(Cancelled):
        texture_maps(dose, organ, ALL, radius=1, bin_width=2.0, chunk_voxels=50, threads=2,
                     progress=lambda fraction_done, message: fraction_done == 0)
    one_thread = texture_maps(dose, organ, ALL, radius=1, bin_width=2.0, chunk_voxels=50, threads=1)
    for k in whole:
        assert np.array_equal(threaded[k], threaded_again[k], equal_nan=True), k
        assert np.array_equal(threaded[k], one_thread[k], equal_nan=True), k  # whatever the threads
    assert (whole["glcm:Contrast"][~organ] == 0).all()
    import torch

    f32 = texture_maps(dose, organ, ["glcm:Contrast"], radius=1, bin_width=2.0, dtype=torch.float32)
    np.testing.assert_allclose(f32["glcm:Contrast"], whole["glcm:Contrast"], rtol=1e-5)


def test_many_grey_levels_slices_and_float_moments_equal_default(monkeypatch):
    """Kernels spanning hundreds of grey levels: the per-direction histograms are split into slices
    of centres to bound memory, and the central moments fall back from exact int64 to float64 where
    int64 could overflow; both give the default path's maps (equal to pyradiomics above)."""
    from COMPASSLib.features import _texture_torch as tt

    dose, organ = synthetic_dose(shape=(7, 8, 9), seed=6)
    args = dict(radius=1, bin_width=0.05, threads=1)          # ~1000 grey levels in the ROI
    default = texture_maps(dose, organ, ["glcm:*"], **args)
    monkeypatch.setattr(tt, "_HISTOGRAM_BYTES", 2 ** 20)
    monkeypatch.setattr(tt, "_INT64_MOMENT_BOUND", 0)
    sliced = texture_maps(dose, organ, ["glcm:*"], **args)
    for k in default:
        np.testing.assert_allclose(sliced[k], default[k], rtol=1e-10, atol=1e-12, err_msg=k)


def test_bad_input_is_a_clear_feature_error():
    dose, organ = synthetic_dose(shape=(6, 6, 6))
    with pytest.raises(FeatureError, match="unknown glcm feature 'Contrastt'"):
        texture_maps(dose, organ, ["glcm:Contrastt"])
    with pytest.raises(FeatureError, match="class:Name"):
        parse_features("glszm:*")
    with pytest.raises(FeatureError, match="mask is empty"):
        texture_maps(dose, np.zeros_like(organ), ["glcm:Contrast"])
    with pytest.raises(FeatureError, match="one shape"):
        texture_maps(dose, organ[:-1], ["glcm:Contrast"])
    with pytest.raises(FeatureError, match="radius"):
        texture_maps(dose, organ, ["glcm:Contrast"], radius=0)
    bad = dose.copy()
    bad[organ] = np.nan
    with pytest.raises(FeatureError, match="non-finite"):
        texture_maps(bad, organ, ["glcm:Contrast"])
    assert parse_features("glcm:Contrast, firstorder:*")[0] == "glcm:Contrast"


def test_summarise_map_percentiles_skip_nan():
    m = np.arange(27, dtype=float).reshape(3, 3, 3)
    m[0, 0, 0] = np.nan
    mask = np.ones_like(m, dtype=bool)
    mask[2] = False
    s = summarise_map(m, mask)
    v = np.arange(1, 18, dtype=float)
    assert s["p90"] == pytest.approx(np.percentile(v, 90)) and s["p10"] == pytest.approx(np.percentile(v, 10))
    assert s["mean"] == pytest.approx(v.mean()) and set(s) == {"mean", "std", "p10", "p50", "p90"}


def test_organ_maps_and_cli_write_nrrd_with_geometry_and_provenance(tmp_path):
    from COMPASSLib.cli import main

    dose, organ = synthetic_dose(shape=(8, 9, 10), seed=4)
    image = _image(dose)
    mask = _mask_like(organ, image)
    sitk.WriteImage(image, str(tmp_path / "bed.nrrd"))
    sitk.WriteImage(mask, str(tmp_path / "heart.nrrd"))
    out = tmp_path / "maps"
    rc = main(["texture", "--image", str(tmp_path / "bed.nrrd"), "--mask", str(tmp_path / "heart.nrrd"),
               "--features", "glcm:Contrast,glcm:JointEntropy,firstorder:Entropy", "--radius", "1",
               "--bin-width", "2", "-o", str(out), "--device", "cpu"])
    assert rc == 0
    expected = texture_maps(image, mask, "glcm:Contrast,glcm:JointEntropy,firstorder:Entropy", bin_width=2)
    for key in expected:
        written = sitk.ReadImage(str(out / (key.replace(":", "_") + ".nrrd")))
        assert written.GetSpacing() == image.GetSpacing() and written.GetOrigin() == image.GetOrigin()
        assert np.array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(expected[key]),
                              equal_nan=True)
    prov = json.loads((out / "texture_maps.json").read_text())
    assert prov["settings"]["bin_width"] == 2 and prov["versions"]["torch"]
    assert len(prov["inputs"]["image"]["sha256"]) == 64
    # a mask on another grid is refused with the file named, exit code 2
    other = sitk.Image(4, 4, 4, sitk.sitkUInt8)
    sitk.WriteImage(other, str(tmp_path / "small.nrrd"))
    assert main(["texture", "--image", str(tmp_path / "bed.nrrd"), "--mask", str(tmp_path / "small.nrrd"),
                 "--bin-width", "2", "-o", str(tmp_path / "x")]) == 2
    # the pipeline entry: chosen organs, one folder per organ
    maps = organ_texture_maps(image, {"Heart": mask, "Lung": mask}, ["glcm:Contrast"], organs=["Heart"],
                              bin_width=2, out_dir=tmp_path / "organs", patient="P1", fraction=2)
    assert list(maps) == ["Heart"] and (tmp_path / "organs/Heart/glcm_Contrast.nrrd").exists()
    with pytest.raises(FeatureError, match=r"no mask for organ 'Cord'.*patient P1, fraction 2"):
        organ_texture_maps(image, {"Heart": mask}, ["glcm:Contrast"], organs=["Cord"], patient="P1",
                           fraction=2)
