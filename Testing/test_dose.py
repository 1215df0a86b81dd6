"""BED / EQD2 / gEUD / DVH against published vectors and hand-checkable cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from COMPASSLib import dose
from COMPASSLib.errors import CompassError, DoseError


# --- published BED/EQD2 vectors (issue 2) -------------------------------------------------------

@pytest.mark.parametrize("fractions, ab, bed_gy, eqd2_gy", [
    ([18.0] * 3, 10.0, 151.2, 126.0),           # 54 Gy / 3 fx, a/b 10
    ([2.0] * 30, 3.0, 100.0, 60.0),             # 60 Gy / 30 fx, a/b 3
    ([10.0, 12.0, 8.0, 10.0, 10.0], 3.0, 219.33, 131.6),  # unequal fractions, a/b 3
])
def test_published_bed_eqd2(fractions, ab, bed_gy, eqd2_gy):
    total = dose.cumulative_bed(fractions, ab)[-1]
    assert float(total) == pytest.approx(bed_gy, abs=0.005)
    assert float(dose.eqd2_from_bed(total, ab)) == pytest.approx(eqd2_gy, abs=0.05)


def test_cumulative_bed_is_running_sum_of_fraction_beds():
    fractions = [10.0, 12.0, 8.0]
    cumulative = [float(b) for b in dose.cumulative_bed(fractions, 3.0)]
    singles = [float(dose.bed(d, 3.0)) for d in fractions]
    assert cumulative == pytest.approx(np.cumsum(singles).tolist())
    assert singles[0] == pytest.approx(10 * (1 + 10 / 3))


@pytest.mark.parametrize("n, expected", [(1.0, 20.0), (0.5, 22.36), (0.05, 28.98)])
def test_geud_published_half_volume(n, expected):
    values = np.r_[np.full(500, 10.0), np.full(500, 30.0)]
    assert dose.geud(values, n) == pytest.approx(expected, abs=0.005)


def test_geud_limits_and_no_overflow():
    values = np.array([0.0, 40.0, 80.0])
    assert dose.geud(values, 1e-3) == pytest.approx(80.0, rel=2e-3)  # n -> 0: max, no overflow (80^1000)
    assert dose.geud(values, -0.1) == 0.0                              # cold spot dominates a target
    assert dose.geud(np.zeros(4), 0.3) == 0.0


# --- images keep geometry ----------------------------------------------------------------------

def _image(array, spacing=(2.0, 2.5, 3.0), origin=(-10.0, 5.0, 7.5)):
    img = sitk.GetImageFromArray(np.asarray(array, dtype=np.float32))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection((0, 1, 0, 1, 0, 0, 0, 0, 1))
    return img


def test_images_in_images_out_float32_same_geometry():
    rng = np.random.default_rng(0)
    arr = rng.uniform(0, 4, size=(3, 4, 5))
    img = _image(arr)
    out = dose.cumulative_bed([img, img], 3.0)
    assert all(isinstance(o, sitk.Image) for o in out)
    last = out[-1]
    assert last.GetPixelID() == sitk.sitkFloat32
    assert last.GetSpacing() == img.GetSpacing() and last.GetOrigin() == img.GetOrigin()
    assert last.GetDirection() == img.GetDirection()
    a32 = arr.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(sitk.GetArrayFromImage(last), 2 * a32 * (1 + a32 / 3.0), rtol=1e-6)
    eqd2 = dose.eqd2_from_bed(last, 3.0)
    np.testing.assert_allclose(sitk.GetArrayFromImage(eqd2), sitk.GetArrayFromImage(last) / (1 + 2 / 3.0), rtol=1e-6)
    # arrays stay arrays
    assert isinstance(dose.bed(arr, 3.0), np.ndarray)


def test_inputs_not_modified():
    arr = np.array([[1.0, -1e-6, 2.0]])
    before = arr.copy()
    dose.bed(arr, 3.0)
    np.testing.assert_array_equal(arr, before)


# --- alpha/beta maps ---------------------------------------------------------------------------

def test_alpha_beta_map_organs_overlap_and_overrides():
    ref = _image(np.zeros((2, 3, 4)))
    heart = np.zeros((2, 3, 4), np.uint8)
    heart[0] = 1
    eso = np.zeros((2, 3, 4), np.uint8)
    eso[:, 0] = 1  # overlaps the heart on row 0 of slice 0

    def mask(a):
        m = sitk.GetImageFromArray(a)
        m.CopyInformation(ref)
        return m

    ab = dose.alpha_beta_map({"Heart": mask(heart), "Oesophagus": mask(eso)}, ref)  # synonym of Esophagus
    a = sitk.GetArrayFromImage(ab)
    assert a[0, 1, 1] == 3.0          # heart only (organs.yaml)
    assert a[1, 0, 1] == 10.0         # esophagus only
    assert a[0, 0, 1] == 3.0          # overlap: smallest alpha/beta wins
    assert a[1, 2, 2] == 3.0          # outside all organs: BODY default
    ab2 = dose.alpha_beta_map({"Heart": heart, "Oesophagus": eso}, np.zeros((2, 3, 4)),
                              overrides={"Esophagus": 2.0, "Heart": 4.0}, default_gy=8.0)
    assert ab2[0, 0, 1] == 2.0 and ab2[0, 1, 1] == 4.0 and ab2[1, 2, 2] == 8.0
    # a voxelwise map drives BED voxel by voxel
    b = sitk.GetArrayFromImage(dose.bed(_image(np.full((2, 3, 4), 6.0)), ab))
    assert b[1, 0, 1] == pytest.approx(6 * (1 + 6 / 10)) and b[1, 2, 2] == pytest.approx(6 * (1 + 6 / 3))
    with pytest.raises(DoseError, match="no alpha/beta for ROI 'Mystery'"):
        dose.alpha_beta_map({"Mystery": heart}, np.zeros((2, 3, 4)))


# --- repopulation ----------------------------------------------------------------------------

def test_repopulation_off_by_default_and_explicit_when_on():
    fractions = [2.0] * 35
    plain = dose.cumulative_bed(fractions, 10.0)
    rep = dose.Repopulation(alpha_per_gy=0.3, tk_days=21, tp_days=3)
    days = [k // 5 * 7 + k % 5 for k in range(35)]  # Mon-Fri over 7 weeks; last fraction on day 46
    corrected = dose.cumulative_bed(fractions, 10.0, repopulation=rep, treatment_days=days)
    assert float(plain[-1]) == pytest.approx(84.0)
    assert float(corrected[0]) == float(plain[0])  # before Tk nothing is lost
    assert float(corrected[-1]) == pytest.approx(84.0 - math.log(2) * (46 - 21) / (0.3 * 3))
    with pytest.raises(DoseError, match="treatment_days"):
        dose.cumulative_bed(fractions, 10.0, repopulation=rep)


# --- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("ab", [0.0, -3.0, float("nan"), float("inf")])
def test_bad_alpha_beta_is_dose_error(ab):
    with pytest.raises(DoseError, match="alpha/beta"):
        dose.bed(np.ones(3), ab)


def test_negative_or_nan_dose_is_dose_error_naming_fraction():
    with pytest.raises(DoseError, match="negative") as e:
        dose.cumulative_bed([np.ones(3), np.array([1.0, -0.5, 1.0])], 3.0)
    assert e.value.fraction == 2 and "fraction 2" in str(e.value)
    with pytest.raises(DoseError, match="NaN"):
        dose.bed(np.array([np.nan]), 3.0)
    assert issubclass(DoseError, CompassError)


def test_mismatched_grids_are_errors():
    a = _image(np.ones((2, 2, 2)))
    b = _image(np.ones((2, 2, 2)), origin=(0.0, 0.0, 0.0))
    with pytest.raises(DoseError, match="same grid"):
        dose.cumulative_bed([a, b], 3.0)
    with pytest.raises(DoseError, match="alpha/beta map"):
        dose.bed(np.ones((2, 2)), np.full((3, 3), 3.0))


# --- DVH ---------------------------------------------------------------------------------------

def test_dvh_metrics_hand_computed():
    # 10 voxels of 0.5 cc with doses 1..10 Gy
    values = np.arange(1.0, 11.0)
    d = dose.DVH(values[::-1], voxel_cc=0.5)
    m = d.metrics(vx_gy=(5,), geud_n=1.0)
    assert m["volume_cc"] == 5.0 and m["min_gy"] == 1.0 and m["max_gy"] == 10.0 and m["mean_gy"] == 5.5
    assert m["d2cc_gy"] == 7.0       # hottest 4 voxels (2 cc): 10, 9, 8, 7 -> minimum 7
    assert m["d0_1cc_gy"] == 10.0    # less than one voxel: the hottest voxel
    assert m["d50_gy"] == 6.0        # hottest 2.5 cc -> 5 voxels -> 6
    assert m["d95_gy"] == 1.0 and m["d98_gy"] == 1.0
    assert m["d2_gy"] == 10.0
    assert m["v5gy_cc"] == 3.0 and m["v5gy_pct"] == 60.0  # 5..10 Gy
    assert m["geud_gy"] == pytest.approx(5.5)
    assert d.dx_cc(2.5000000001) == 6.0 and d.dx_cc(2.6) == 5.0 and d.dx_cc(5.0) == 1.0 and d.dx_cc(6.0) == 0.0
    assert d.dx_pct(100) == 1.0 and d.dx_pct(0) == 10.0
    edges, cum = d.curve(1.0)
    assert cum[0] == 5.0 and cum[5] == 3.0 and cum[-1] == 0.5 and edges[-1] == 10.0


def test_dvh_from_images_uses_spacing_and_matches_numpy():
    rng = np.random.default_rng(1)
    arr = rng.gamma(2.0, 3.0, size=(6, 7, 8))
    mask = (rng.uniform(size=arr.shape) > 0.6).astype(np.uint8)
    img = _image(arr)
    m_img = sitk.GetImageFromArray(mask)
    m_img.CopyInformation(img)
    d = dose.dvh(img, m_img)
    inside = sitk.GetArrayFromImage(img).astype(np.float64)[mask > 0]
    assert d.volume_cc == pytest.approx(mask.sum() * 2.0 * 2.5 * 3.0 / 1000)
    assert d.mean_gy == pytest.approx(inside.mean())
    assert d.max_gy == inside.max() and d.min_gy == inside.min()
    assert dose.vx_gy(img, m_img, 5.0) == pytest.approx((inside >= 5.0).sum() * 0.015)
    with pytest.raises(DoseError, match="empty"):
        dose.dvh(img, np.zeros(arr.shape), voxel_cc=0.015)
    with pytest.raises(DoseError, match="voxel_cc"):
        dose.dvh(arr, mask)


# --- RTDOSE export round trip ------------------------------------------------------------------

def test_bed_rtdose_round_trip_on_real_plan(shared_data, tmp_path):
    """BED of the dicompyler example plan (14 Gy in 7 fractions) written as RTDOSE and read back by
    pydicom, SimpleITK/GDCM and COMPASSLib's reader: same geometry, values within DoseGridScaling / 2."""
    import pydicom

    from COMPASSLib.io.rtdose import read_rtdose
    from COMPASSLib.io.rtdose_writer import write_rtdose

    src = shared_data / "dicompyler_example" / "rtdose.dcm"
    plan = read_rtdose(src)
    per_fraction = sitk.Cast(plan / 7.0, sitk.sitkFloat32)
    bed_img = dose.cumulative_bed([per_fraction] * 7, 3.0)[-1]
    expected = sitk.GetArrayFromImage(bed_img).astype(np.float64)
    out = tmp_path / "bed.dcm"
    write_rtdose(bed_img, out, quantity="BED", alpha_beta_gy=3.0, template=src)

    ds = pydicom.dcmread(out)
    template = pydicom.dcmread(src, stop_before_pixels=True)
    scaling = float(ds.DoseGridScaling)
    assert ds.Modality == "RTDOSE" and ds.DoseType == "EFFECTIVE" and ds.DoseUnits == "GY"
    assert "BED" in ds.SeriesDescription and "alpha/beta 3 Gy" in ds.SeriesDescription
    assert "BED" in ds.DoseComment
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "FrameOfReferenceUID"):
        assert ds[keyword].value == template[keyword].value
    assert (ds.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID
            == template.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID)
    assert ds.SOPInstanceUID != template.SOPInstanceUID
    assert expected.max() / scaling <= 2 ** 32 - 1 and ds.BitsAllocated == 32
    assert int(ds.NumberOfFrames) == bed_img.GetSize()[2] and float(ds.GridFrameOffsetVector[0]) == 0.0
    np.testing.assert_allclose(ds.pixel_array * scaling, expected, rtol=0, atol=scaling / 2 * 1.0001)

    ours = read_rtdose(out)
    gdcm = sitk.ReadImage(str(out))
    for back in (ours, gdcm):
        assert back.GetSize() == plan.GetSize()
        np.testing.assert_allclose(back.GetOrigin(), plan.GetOrigin(), atol=1e-6)
        np.testing.assert_allclose(back.GetSpacing(), plan.GetSpacing(), atol=1e-6)
        np.testing.assert_allclose(back.GetDirection(), plan.GetDirection(), atol=1e-6)
    assert ours.GetMetaData("DoseType") == "EFFECTIVE"
    tol = scaling / 2 * 1.0001 + np.finfo(np.float32).eps * expected.max()  # our reader returns float32
    np.testing.assert_allclose(sitk.GetArrayFromImage(ours), expected, rtol=0, atol=tol)
    # SimpleITK (GDCM) hands back the stored integers; DoseGridScaling is in its metadata
    gdcm_scaling = float(gdcm.GetMetaData("3004|000e"))
    np.testing.assert_allclose(sitk.GetArrayFromImage(gdcm) * gdcm_scaling, expected, rtol=0,
                               atol=scaling / 2 * 1.0001)


def test_rtdose_writer_flipped_slices_and_bad_input(tmp_path):
    from COMPASSLib.io.rtdose import read_rtdose
    from COMPASSLib.io.rtdose_writer import write_rtdose

    arr = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4) / 7
    img = _image(arr)  # direction swaps x/y: third axis runs against row x column -> negative offsets
    write_rtdose(img, tmp_path / "d.dcm")
    write_rtdose(img, tmp_path / "again.dcm")
    assert (tmp_path / "d.dcm").read_bytes() == (tmp_path / "again.dcm").read_bytes()  # deterministic, UIDs too
    back = read_rtdose(tmp_path / "d.dcm")
    # same voxels in space: compare at the physical point of every index
    for idx in [(0, 0, 0), (3, 2, 1), (1, 2, 0)]:
        p = img.TransformIndexToPhysicalPoint(idx)
        assert back.GetPixel(back.TransformPhysicalPointToIndex(p)) == pytest.approx(img.GetPixel(idx), abs=1e-6)
    with pytest.raises(DoseError, match="alpha/beta"):
        write_rtdose(img, tmp_path / "e.dcm", quantity="EQD2")
    with pytest.raises(DoseError, match="negative"):
        write_rtdose(_image(-arr - 1), tmp_path / "f.dcm")
    assert not (tmp_path / "e.dcm").exists() and not (tmp_path / "f.dcm").exists()


@pytest.mark.parametrize("kwargs", [dict(alpha_per_gy=0, tk_days=21, tp_days=3),
                                    dict(alpha_per_gy=0.3, tk_days=-1, tp_days=3),
                                    dict(alpha_per_gy=0.3, tk_days=21, tp_days=float("nan"))])
def test_bad_repopulation_parameters(kwargs):
    with pytest.raises(DoseError, match="repopulation"):
        dose.Repopulation(**kwargs)
