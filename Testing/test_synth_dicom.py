"""The synthetic cohort's files read back through plain pydicom/SimpleITK and through COMPASSLib's own
ingest give what the generator intended: geometry, HU, SUV, dose, organ masks and the manifest."""
from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from skimage.draw import polygon2mask

from COMPASSLib.cohort import Cohort
from COMPASSLib.synth.anatomy import ROI_NAMES
from COMPASSLib.synth.cohort import scan_images
from COMPASSLib.synth.grid import pet_factor
from COMPASSLib.synth.patient import simulate_patient

SEED, PATIENTS, FRACTIONS, SIZE = 11, 3, 3, "small"   # the conftest `small_cohort`


@functools.lru_cache(maxsize=None)
def sim(index):
    return simulate_patient(SEED, index, FRACTIONS, SIZE)


@pytest.fixture(scope="module")
def cohort(small_cohort):
    return Cohort.load(small_cohort)


def dice(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_manifest_lists_every_file_and_outcome(cohort):
    assert cohort.patient_ids == ["SYN001", "SYN002", "SYN003"]
    for p in cohort.patients:
        assert [f.index for f in p.fractions] == [1, 2, 3]
        assert p.planning.ct and p.planning.rtstruct and not p.planning.dose
        for f in p.fractions:
            for modality in ("ct", "pet", "dose", "rtstruct"):
                files = cohort.paths(f.files(modality))
                assert files and all(Path(x).is_file() for x in files), (p.id, f.index, modality)
    outcomes = cohort.outcomes()
    assert {(o.patient, o.organ) for o in outcomes} == {
        (p, o) for p in cohort.patient_ids for o in ("SpinalCord", "Heart", "Esophagus")}
    for o in outcomes:
        assert 0 <= o.grade <= 3
        assert (o.onset_fraction is None) == (o.grade == 0)
        assert o.onset_fraction is None or 1 <= o.onset_fraction <= FRACTIONS + 1


def test_dicom_headers_are_consistent(cohort):
    sop = {"CT": "1.2.840.10008.5.1.4.1.1.2", "PT": "1.2.840.10008.5.1.4.1.1.128",
           "RTDOSE": "1.2.840.10008.5.1.4.1.1.481.2", "RTSTRUCT": "1.2.840.10008.5.1.4.1.1.481.3"}
    seen_uids = set()
    for p in cohort.patients:
        days = []
        for f in [p.planning, *p.fractions]:
            files = f.ct + f.pet + f.dose + f.rtstruct
            studies = set()
            for path in cohort.paths(files):
                ds = pydicom.dcmread(path, stop_before_pixels=True)
                assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID == sop[ds.Modality]
                assert ds.FrameOfReferenceUID == p.frame_of_reference_uid
                assert str(ds.PatientName) == f"SYN^{p.id[3:]}" and ds.PatientID == p.id
                assert ds.SOPInstanceUID not in seen_uids
                seen_uids.add(ds.SOPInstanceUID)
                studies.add(ds.StudyInstanceUID)
                day = dt.datetime.strptime(ds.StudyDate, "%Y%m%d").date()
            assert len(studies) == 1, "one study per scan session"
            days.append(day)
        # Planning a week before; fractions on consecutive weekdays.
        assert (days[1] - days[0]).days == 7
        for a, b in zip(days[1:], days[2:]):
            assert b.weekday() < 5 and 1 <= (b - a).days <= 3
        dose = pydicom.dcmread(cohort.path(p.fractions[1].dose[0]), stop_before_pixels=True)
        assert (dose.DoseUnits, dose.DoseType, dose.DoseSummationType) == ("GY", "PHYSICAL", "FRACTION")
        assert dose.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID
        assert int(dose.CurrentFractionNumber) == 2
        pet = pydicom.dcmread(cohort.path(p.fractions[0].pet[0]), stop_before_pixels=True)
        rp = pet.RadiopharmaceuticalInformationSequence[0]
        assert pet.Units == "BQML" and pet.DecayCorrection == "START"
        assert "DECY" in pet.CorrectedImage and "ATTN" in pet.CorrectedImage
        assert float(rp.RadionuclideHalfLife) == 6586.2 and float(rp.RadionuclideTotalDose) > 1e8
        assert rp.RadiopharmaceuticalStartDateTime and rp.RadiopharmaceuticalStartTime
        assert float(pet.PatientWeight) == p.weight_kg


def _sitk_series(paths):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(x) for x in paths])
    return reader.Execute()


def test_ct_and_dose_through_simpleitk_match_the_generator(cohort):
    p, s = cohort.patients[1], sim(2)
    grid = s.grid
    f = p.fractions[1]
    ct = _sitk_series(cohort.paths(f.ct))
    assert ct.GetSize() == grid.size
    np.testing.assert_allclose(ct.GetOrigin(), grid.origin_mm, atol=1e-3)
    np.testing.assert_allclose(ct.GetSpacing(), grid.spacing_mm, atol=1e-4)
    np.testing.assert_allclose(ct.GetDirection(), np.eye(3).ravel(), atol=1e-6)
    hu, _ = scan_images(s, 2)
    np.testing.assert_allclose(sitk.GetArrayFromImage(ct), np.clip(np.rint(hu + 1024.0), 0, 4095) - 1024, atol=1e-3)
    # RTDOSE: SimpleITK reads the multi-frame grid; DoseGridScaling gives Gy.
    path = cohort.path(f.dose[0])
    rd = sitk.ReadImage(str(path))
    np.testing.assert_allclose(rd.GetOrigin(), grid.origin_mm, atol=1e-3)
    np.testing.assert_allclose(rd.GetSpacing(), grid.spacing_mm, atol=1e-4)
    scaling = float(pydicom.dcmread(path, stop_before_pixels=True).DoseGridScaling)
    gy = sitk.GetArrayFromImage(rd).astype(np.float64) * scaling
    np.testing.assert_allclose(gy, s.doses_gy[1], atol=scaling)


def _suv_per_bqml(d0):
    """SUVbw per Bq/ml with the textbook formula, straight from the tags (independent of COMPASSLib.io)."""
    rp = d0.RadiopharmaceuticalInformationSequence[0]
    inj = dt.datetime.strptime(rp.RadiopharmaceuticalStartDateTime[:14], "%Y%m%d%H%M%S")
    scan = dt.datetime.strptime(d0.SeriesDate + d0.SeriesTime[:6], "%Y%m%d%H%M%S")
    decayed = float(rp.RadionuclideTotalDose) * 2 ** (-(scan - inj).total_seconds() / float(rp.RadionuclideHalfLife))
    return float(d0.PatientWeight) * 1000.0 / decayed


def _suv_by_hand(paths):
    """SUVbw from pydicom pixels (per-slice rescale) and SimpleITK's series reader (which applies it)."""
    slices = sorted((pydicom.dcmread(x) for x in paths), key=lambda d: float(d.ImagePositionPatient[2]))
    factor = _suv_per_bqml(slices[0])
    bqml = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in slices])
    by_sitk = sitk.GetArrayFromImage(_sitk_series([d.filename for d in slices]))
    return bqml * factor, by_sitk * factor


@pytest.mark.parametrize("index, fraction", [(1, 1), (3, 3)])
def test_pet_gives_back_the_intended_suv(cohort, index, fraction):
    from COMPASSLib.io.pet import read_pet_series

    p, s = cohort.patients[index - 1], sim(index)
    paths = cohort.paths(p.fraction(fraction).pet)
    _, intended = scan_images(s, fraction)
    visible = intended > 0.2     # inside the body: quantisation is relative to the slice maximum
    for suv in (*_suv_by_hand(paths), sitk.GetArrayFromImage(read_pet_series(paths))):
        assert suv.shape == intended.shape
        rel = np.abs(suv[visible] - intended[visible]) / intended[visible]
        assert rel.max() < 0.01, rel.max()
    pet = read_pet_series(paths)
    pgrid = s.grid.downsampled(pet_factor(SIZE))
    np.testing.assert_allclose(pet.GetOrigin(), pgrid.origin_mm, atol=1e-3)
    np.testing.assert_allclose(pet.GetSpacing(), pgrid.spacing_mm, atol=1e-4)


def _rasterise_by_hand(path, grid):
    """Voxel-centre inclusion of every CLOSED_PLANAR contour (even-odd), with skimage, from pydicom."""
    ds = pydicom.dcmread(path)
    names = {int(r.ROINumber): r.ROIName for r in ds.StructureSetROISequence}
    z = grid.axes()[2]
    out = {}
    for rc in ds.ROIContourSequence:
        mask = np.zeros(grid.shape, bool)
        for c in rc.ContourSequence:
            assert c.ContourGeometricType == "CLOSED_PLANAR"
            pts = np.asarray(c.ContourData, float).reshape(-1, 3)
            k = int(np.argmin(np.abs(z - pts[0, 2])))
            rows = (pts[:, 1] - grid.origin_mm[1]) / grid.spacing_mm[1]
            cols = (pts[:, 0] - grid.origin_mm[0]) / grid.spacing_mm[0]
            mask[k] ^= polygon2mask(grid.shape[1:], np.column_stack([rows, cols]))
        out[names[int(rc.ReferencedROINumber)]] = mask
    return out


def test_rtstruct_gives_back_the_generator_masks(cohort):
    from COMPASSLib.io.rtstruct import list_rois

    p, s = cohort.patients[0], sim(1)
    for scan, f in ((0, p.planning), (2, p.fraction(2))):
        path = cohort.path(f.rtstruct[0])
        assert list_rois(path) == list(ROI_NAMES)
        by_hand = _rasterise_by_hand(path, s.grid)
        for name in ROI_NAMES:
            assert dice(by_hand[name], s.masks[scan][name]) >= 0.95, name
    # The GTV shrinks over the course, and the fraction's RTSTRUCT shows it.
    assert s.masks[3]["GTV"].sum() <= s.masks[1]["GTV"].sum()


def test_ingest_load_fraction_matches_the_generator(cohort):
    from COMPASSLib.ingest import load_fraction

    s = sim(2)
    fi = load_fraction(cohort, "SYN002", 3)
    assert fi.ct.GetSize() == s.grid.size
    np.testing.assert_allclose(fi.ct.GetOrigin(), s.grid.origin_mm, atol=1e-3)
    np.testing.assert_allclose(sitk.GetArrayFromImage(fi.dose), s.doses_gy[2], atol=1e-3)
    for organ in ("SpinalCord", "Heart", "Esophagus", "GTV", "BODY"):
        assert dice(sitk.GetArrayFromImage(fi.masks[organ]), s.masks[3][organ]) >= 0.95, organ
    # PET on the CT grid (resampled from its 1:1 small grid): SUV inside the heart as intended.
    _, intended = scan_images(s, 3)
    heart = s.masks[3]["Heart"]
    np.testing.assert_allclose(sitk.GetArrayFromImage(fi.pet)[heart].mean(), intended[heart].mean(), rtol=0.01)


def test_fraction_doses_sum_to_the_course_dose(cohort):
    from COMPASSLib.io.rtdose import read_rtdose
    from COMPASSLib.synth.dose import fraction_dose

    for p, index in zip(cohort.patients, (1, 2, 3)):
        s = sim(index)
        read = [sitk.GetArrayFromImage(read_rtdose(x)).astype(np.float64)
                for f in p.fractions for x in cohort.paths(f.dose)]
        course = sum(read)
        np.testing.assert_allclose(course, sum(s.doses_gy), atol=1e-3 * FRACTIONS)
        # Each fraction differs (setup error, shrinking GTV) ...
        assert all(np.abs(a - b).max() > 0.05 for a, b in zip(read, read[1:]))
        # ... while the plan (no setup error) x fractions covers the GTV with the prescription (D95).
        planned = fraction_dose(s.grid, s.masks[1]["BODY"], s.masks[1]["GTV"], s.anatomy, s.plan, 1, planned=True)
        gtv = s.masks[1]["GTV"]
        assert np.percentile(planned[gtv] * FRACTIONS, 5) == pytest.approx(s.plan.prescription_gy, rel=1e-6)
        # The delivered course still gives the GTV close to the prescription.
        assert 0.85 * s.plan.prescription_gy < np.percentile(course[gtv], 5) < 1.05 * s.plan.prescription_gy


def test_scan_of_the_files_gives_the_written_manifest(small_cohort, cohort):
    from COMPASSLib.scan import scan

    scanned = scan(Path(small_cohort).parent)
    assert scanned.to_dict()["patients"] == cohort.to_dict()["patients"]


def test_pet_trajectory_shows_the_hidden_rise(cohort, small_cohort):
    """Through ingest, each organ's mean SUV rises from the first to the last PET by the hidden
    pet_rise of ground_truth.json (blur and noise allowed for)."""
    import json

    from COMPASSLib.ingest import load_fraction

    truth = json.loads((Path(small_cohort).parent / "ground_truth.json").read_text())
    hidden = {(r["patient"], r["organ"]): r["pet_rise"] for p in truth["patients"] for r in p["organs"]}
    rises = []
    for p in cohort.patients:
        first, last = load_fraction(cohort, p.id, 1), load_fraction(cohort, p.id, FRACTIONS)
        for organ in ("SpinalCord", "Heart", "Esophagus"):
            m = sitk.GetArrayFromImage(first.masks[organ]).astype(bool)
            measured = sitk.GetArrayFromImage(last.pet)[m].mean() / sitk.GetArrayFromImage(first.pet)[m].mean() - 1
            assert abs(measured - hidden[(p.id, organ)]) < 0.02 + 0.15 * hidden[(p.id, organ)], (p.id, organ)
            rises.append(hidden[(p.id, organ)])
    assert max(rises) > 0.1     # the cohort has organs whose uptake visibly rises
