"""Issue 15, "nothing wrong passes silently": inputs that used to give a plausible wrong number (or a
traceback) are refused with an error naming the file, patient and fraction, or named in a warning.

Reproduced on the synthetic cohort (the `small_cohort` fixture; files that are corrupted are copied into
tmp_path first, the fixture is never modified) and on small files written here. The model-folder checks
are in test_silent_errors_model.py."""
from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from COMPASSLib.cli import main
from COMPASSLib.cohort import Cohort, read_outcomes
from COMPASSLib.errors import CompassError, InputError
from COMPASSLib.io.pet import read_pet_series
from helpers_dicom import pet_info, square, write_rtdose, write_rtstruct, write_series


# --- helpers ------------------------------------------------------------------------------------
def _absolute_manifest(small_cohort) -> dict:
    """The fixture's manifest as a dict with absolute file paths (so a copy can live anywhere)."""
    cohort = Cohort.load(small_cohort)
    d = cohort.to_dict()
    for p in d["patients"]:
        for f in p["fractions"] + ([p["planning"]] if p.get("planning") else []):
            for m in ("ct", "pet", "dose", "rtstruct"):
                f[m] = [str(cohort.path(x)) for x in f[m]]
    d["outcomes"] = str(cohort.path(cohort.outcomes_file))
    return d


def _write_manifest(folder: Path, d: dict, outcomes_text: str | None = None) -> Path:
    """cohort.json in `folder`; with `outcomes_text` an outcomes.csv of the cohort's own beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    d = copy.deepcopy(d)
    if outcomes_text is not None:
        (folder / "outcomes.csv").write_text(outcomes_text)
        d["outcomes"] = "outcomes.csv"
    path = folder / "cohort.json"
    path.write_text(json.dumps(d, indent=1))
    return path


def _outcomes_text(small_cohort) -> str:
    return (Path(small_cohort).parent / "outcomes.csv").read_text()


def _copy_files(paths, folder: Path) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for p in paths:
        target = folder / Path(p).name
        shutil.copy(p, target)
        out.append(target)
    return out


def _one_line(error: CompassError) -> str:
    text = str(error)
    assert "\n" not in text
    return text


# --- 1. PET uptake time -------------------------------------------------------------------------
def _pet_with_injection_before_scan(small_cohort, tmp_path, minutes):
    """A copy of patient 1 fraction 1's PET whose injection time is `minutes` before the series time."""
    d = _absolute_manifest(small_cohort)
    patient = d["patients"][0]
    files = _copy_files(patient["fractions"][0]["pet"], tmp_path / "pet")
    for f in files:
        ds = pydicom.dcmread(f)
        scan = dt.datetime.strptime(ds.SeriesDate + str(ds.SeriesTime)[:6], "%Y%m%d%H%M%S")
        injection = scan - dt.timedelta(minutes=minutes)
        info = ds.RadiopharmaceuticalInformationSequence[0]
        info.RadiopharmaceuticalStartDateTime = injection.strftime("%Y%m%d%H%M%S")
        info.RadiopharmaceuticalStartTime = injection.strftime("%H%M%S")
        ds.save_as(f)
    return d, patient["id"], files


def test_default_uptake_range_is_documented_fdg_plausibility_bound():
    from COMPASSLib.io.pet import default_uptake_range_min

    assert default_uptake_range_min() == (30.0, 180.0)      # Resources/pet_suv.yaml


def test_pet_injected_12_hours_before_scan_is_refused_not_converted(small_cohort, tmp_path):
    d, pid, files = _pet_with_injection_before_scan(small_cohort, tmp_path, 60)
    one_hour = read_pet_series(files, patient=pid, fraction=1)        # a normal FDG scan converts
    assert 2.0 < float(sitk.GetArrayViewFromImage(one_hour).max()) < 30      # tumour SUVmax of FDG

    d, pid, files = _pet_with_injection_before_scan(small_cohort, tmp_path, 12 * 60)
    with pytest.raises(InputError, match=r"uptake time 720\.0 min") as err:
        read_pet_series(files, patient=pid, fraction=1)
    text = _one_line(err.value)
    assert "accepted 30-180 min" in text and f"patient {pid}" in text and "fraction 1" in text
    assert err.value.file is not None and Path(err.value.file).parent == tmp_path / "pet"


def test_pet_injected_3_days_before_scan_is_an_input_error_through_ingest(small_cohort, tmp_path):
    """Used to convert (SUV x 2^(4320/109.8)) and then ask numpy for terabytes in the features."""
    from COMPASSLib.ingest import load_fraction

    d, pid, files = _pet_with_injection_before_scan(small_cohort, tmp_path, 3 * 24 * 60)
    d["patients"][0]["fractions"][0]["pet"] = [str(f) for f in files]
    manifest = _write_manifest(tmp_path / "cohort", d)
    with pytest.raises(InputError, match=r"uptake time 4320\.0 min.*accepted 30-180 min") as err:
        load_fraction(manifest, pid, 1, modalities=("pet",))
    assert err.value.patient == pid and err.value.fraction == 1 and err.value.file.endswith(".dcm")


def _pet(tmp_path, when=dt.datetime(2026, 1, 5, 9, 0, 0), **info):
    def tags(ds, z):
        pet_info(ds, **info)
    return write_series(tmp_path, np.full((3, 4, 4), 2500, np.int16), modality="PT", spacing=(4.0, 4.0, 4.0),
                        slope=2.0, when=when, extra=tags)


def test_negative_uptake_names_uptake_and_range(tmp_path):
    with pytest.raises(InputError, match=r"precedes injection.*uptake time -60\.0 min.*accepted 30-180 min"):
        read_pet_series(_pet(tmp_path, injection="100000"), patient="P1", fraction=2)


@pytest.mark.parametrize("half_life_s", [0.001, 4.0, 109.77])
def test_decay_correction_that_overflows_is_refused(tmp_path, half_life_s):
    # a half-life of 1 ms: 2^(-3600 s / 0.001 s) is 0.0 and the SUV factor divided by zero; 4 s made SUVs of
    # 1e266; 109.77 (F-18's half-life in minutes, given as seconds) made them 2^32.8 = 7e9 times too high
    with pytest.raises(InputError, match=r"decay correction .* is beyond 2\^10") as err:
        read_pet_series(_pet(tmp_path / str(half_life_s), half_life_s=half_life_s), patient="P1", fraction=2)
    assert "RadionuclideHalfLife" in str(err.value) and "fraction 2" in str(err.value)


def test_uptake_range_is_configurable_per_call(tmp_path):
    files = _pet(tmp_path)                     # 60 min uptake
    with pytest.raises(InputError, match=r"accepted 10-20 min \(uptake_range_min\)"):
        read_pet_series(files, uptake_range_min=(10, 20))
    assert read_pet_series(files, uptake_range_min=(50, 70)).GetMetaData("Units") == "SUVbw"
    with pytest.raises(InputError, match="low < high"):
        read_pet_series(files, uptake_range_min=(90, 20))


# --- 2. manifest: patients and fractions once ---------------------------------------------------
def test_fraction_listed_twice_is_refused_at_load(small_cohort, tmp_path):
    d = _absolute_manifest(small_cohort)
    patient = d["patients"][0]
    patient["fractions"].insert(2, copy.deepcopy(patient["fractions"][1]))      # fraction 2 twice
    manifest = _write_manifest(tmp_path / "twice", d)
    with pytest.raises(InputError, match="fraction index 2 twice") as err:
        Cohort.load(manifest)
    assert err.value.file == str(manifest) and err.value.patient == patient["id"] and err.value.fraction == 2


def test_fraction_entry_copied_under_a_new_index_is_refused(small_cohort, tmp_path):
    d = _absolute_manifest(small_cohort)
    patient = d["patients"][1]
    patient["fractions"][2] = {**copy.deepcopy(patient["fractions"][1]), "index": 3}
    manifest = _write_manifest(tmp_path / "copied", d)
    with pytest.raises(InputError, match="fraction 3 .* repeats fraction 2") as err:
        Cohort.load(manifest)
    assert err.value.file == str(manifest) and err.value.patient == patient["id"]


def test_dose_file_twice_in_one_fraction_is_refused(small_cohort, tmp_path):
    d = _absolute_manifest(small_cohort)
    fraction = d["patients"][0]["fractions"][0]
    fraction["dose"] = fraction["dose"] * 2
    with pytest.raises(InputError, match="listed twice in fraction 1"):
        Cohort.load(_write_manifest(tmp_path / "dose_twice", d))


def test_patient_listed_twice_is_refused_at_load(small_cohort, tmp_path):
    d = _absolute_manifest(small_cohort)
    d["patients"].append(copy.deepcopy(d["patients"][0]))
    manifest = _write_manifest(tmp_path / "patient_twice", d)
    with pytest.raises(InputError, match="twice") as err:
        Cohort.load(manifest)
    assert err.value.file == str(manifest) and err.value.patient == d["patients"][0]["id"]


def test_shared_planned_dose_over_distinct_sessions_is_allowed_with_a_warning(small_cohort, tmp_path, caplog):
    d = _absolute_manifest(small_cohort)
    fractions = d["patients"][0]["fractions"]
    fractions[1]["dose"] = list(fractions[0]["dose"])          # other images, other day: a planned dose
    with caplog.at_level(logging.WARNING, logger="COMPASSLib.cohort"):
        cohort = Cohort.load(_write_manifest(tmp_path / "planned", d))
    assert [f.index for f in cohort.patients[0].fractions] == [1, 2, 3]
    assert "same dose file" in caplog.text


# --- 3. outcomes for patients not in the cohort ------------------------------------------------
def test_outcome_row_with_typo_in_patient_id_is_an_error(small_cohort, tmp_path):
    d = _absolute_manifest(small_cohort)
    pid = d["patients"][0]["id"]                               # SYN001
    typo = pid.replace("0", "O", 1)                            # SYNO01
    text = _outcomes_text(small_cohort).replace(f"{pid},", f"{typo},")
    cohort = Cohort.load(_write_manifest(tmp_path / "typo", d, text))
    with pytest.raises(InputError) as err:
        cohort.outcomes()
    message = _one_line(err.value)
    assert repr(typo) in message and f"closest known id: {pid!r}" in message and "line 2" in message
    assert err.value.file == str(tmp_path / "typo" / "outcomes.csv")
    assert len(cohort.outcomes(check=False)) == len(read_outcomes(tmp_path / "typo" / "outcomes.csv"))


def test_training_stops_before_features_on_an_outcomes_typo(small_cohort, tmp_path):
    from COMPASSLib import pipeline

    d = _absolute_manifest(small_cohort)
    pid = d["patients"][1]["id"]
    text = _outcomes_text(small_cohort).replace(f"{pid},", f"{pid}x,")
    manifest = _write_manifest(tmp_path / "typo", d, text)
    with pytest.raises(InputError, match=f"{pid}x.*closest known id: '{pid}'"):
        pipeline.run(manifest, tmp_path / "out", {"profile": "fast"})
    assert not (tmp_path / "out" / "features.csv").exists()


def test_subset_for_scoring_keeps_outcomes_of_the_other_patients(small_cohort, tmp_path):
    d = _absolute_manifest(small_cohort)
    cohort = Cohort.load(_write_manifest(tmp_path / "own", d, _outcomes_text(small_cohort)))
    pid = cohort.patient_ids[0]
    one = cohort.subset([pid])
    assert len(one.outcomes()) == len(cohort.outcomes())      # rows of the others are not an error
    assert one.onsets(pid) == cohort.onsets(pid)
    # the subset still catches a typo: it knows the patients of the cohort it came from
    (tmp_path / "own" / "outcomes.csv").write_text(_outcomes_text(small_cohort).replace(f"{pid},", "SYN0001,"))
    with pytest.raises(InputError, match="SYN0001"):
        one.outcomes()


def test_outcomes_file_shared_by_a_one_patient_manifest_is_not_an_error(small_cohort, tmp_path):
    """write_subset / the Slicer scene cohort refer to the study's outcomes.csv outside their folder."""
    d = _absolute_manifest(small_cohort)
    d["patients"] = d["patients"][:1]
    cohort = Cohort.load(_write_manifest(tmp_path / "one", d))
    assert {o.patient for o in cohort.outcomes()} == set(Cohort.load(small_cohort).patient_ids)


# --- 4. grades ----------------------------------------------------------------------------------
def test_fractional_grade_is_refused_not_truncated(tmp_path):
    p = tmp_path / "outcomes.csv"
    p.write_text("patient,organ,grade,onset_fraction\nP1,Heart,0,\nP1,Esophagus,2.7,3\n")
    with pytest.raises(InputError, match=r"line 3 \(patient 'P1', organ 'Esophagus'\): grade '2.7' is not a whole") \
            as err:
        read_outcomes(p)
    assert err.value.file == str(p) and err.value.patient == "P1"
    p.write_text("patient,organ,grade,onset_fraction\nP1,Heart,2.0,3\nP1,Lungs,6,\n")
    with pytest.raises(InputError, match="line 3.*outside CTCAE 0-5"):
        read_outcomes(p)
    p.write_text("patient,organ,grade,onset_fraction\nP1,Heart,2,3.5\n")
    with pytest.raises(InputError, match="onset_fraction '3.5' is not a whole number"):
        read_outcomes(p)


def test_conflicting_and_repeated_outcome_rows_are_refused(tmp_path):
    p = tmp_path / "outcomes.csv"
    p.write_text("patient,organ,grade,onset_fraction\nP1,Heart,0,\nP2,Heart,1,4\nP1,Heart,2,3\n")
    with pytest.raises(InputError, match="line 4 conflicts with line 2: patient 'P1' organ 'Heart'"):
        read_outcomes(p)
    p.write_text("patient,organ,grade,onset_fraction\nP1,Heart,2,3\nP1,Heart,2,3\n")
    with pytest.raises(InputError, match="line 3 repeats line 2"):
        read_outcomes(p)


# --- 5. organs named differently in one fraction -----------------------------------------------
def _rename_rois(path, names: dict):
    ds = pydicom.dcmread(path)
    for roi in ds.StructureSetROISequence:
        roi.ROIName = names.get(str(roi.ROIName), roi.ROIName)
    ds.save_as(path)


def test_unmapped_roi_names_are_named_in_ingest_and_feature_warnings(small_cohort, tmp_path, caplog):
    from COMPASSLib.features.fraction import PatientContext, _organ_mask
    from COMPASSLib.features.settings import FeatureSettings
    from COMPASSLib.ingest import PatientLoader

    d = _absolute_manifest(small_cohort)
    patient = d["patients"][0]
    rs = _copy_files(patient["fractions"][1]["rtstruct"], tmp_path / "rs")
    _rename_rois(rs[0], {"Heart": "Herz", "Esophagus": "Speiseroehre"})
    patient["fractions"][1]["rtstruct"] = [str(rs[0])]
    manifest = _write_manifest(tmp_path / "cohort", d)
    organs = ["Heart", "Esophagus", "SpinalCord"]
    loader = PatientLoader(manifest, patient["id"], modalities=("rtstruct",), organs=organs)
    with caplog.at_level(logging.WARNING, logger="COMPASSLib.ingest"):
        first = loader.load(1)
        second = loader.load(2)
    assert set(first.masks) == set(organs) and first.unmapped_rois == []
    assert set(second.masks) == {"SpinalCord"} and set(second.unmapped_rois) >= {"Herz", "Speiseroehre"}
    warned = [r.getMessage() for r in caplog.records if "fraction 2" in r.getMessage()]
    assert len(warned) == 1 and "Esophagus, Heart" in warned[0]
    assert "'Herz'" in warned[0] and "'Speiseroehre'" in warned[0] and "organs" in warned[0]

    ctx = PatientContext(patient["id"], organs, FeatureSettings(profile="fast"))
    assert _organ_mask(ctx, second, "Heart", 2) is None
    assert len(ctx.warnings) == 1
    text = ctx.warnings[0]
    assert f"organ Heart has no contour in patient {patient['id']} fraction 2" in text
    assert "Herz" in text and "Speiseroehre" in text


# --- 6. compass bed over two patients ----------------------------------------------------------
def test_bed_refuses_doses_of_two_patients(tmp_path, capsys):
    dose = np.full((3, 4, 5), 2.0)
    a = write_rtdose(tmp_path / "a.dcm", dose, patient="ALICE", frame="1.2.3.100")
    b = write_rtdose(tmp_path / "b.dcm", dose, patient="BOB", frame="1.2.3.200")
    out = tmp_path / "bed.nrrd"
    assert main(["bed", "--alpha-beta", "3", str(a), str(b), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "PatientID 'ALICE'" in err and "PatientID 'BOB'" in err and "a.dcm" in err and "b.dcm" in err
    assert err.count("\n") == 1 and not out.exists()
    c = write_rtdose(tmp_path / "c.dcm", dose, patient="ALICE", frame="1.2.3.999")
    assert main(["bed", "--alpha-beta", "3", str(a), str(c), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "FrameOfReferenceUID '1.2.3.100'" in err and "FrameOfReferenceUID '1.2.3.999'" in err


def test_bed_compares_a_nrrd_frame_of_reference_and_says_nrrd_carries_none(tmp_path, capsys):
    from COMPASSLib.commands import bed

    dose = np.full((3, 4, 5), 2.0)
    a = write_rtdose(tmp_path / "a.dcm", dose, patient="ALICE", frame="1.2.3.100")
    img = sitk.GetImageFromArray(dose.astype(np.float32))
    img.SetSpacing((2.0, 2.0, 3.0))
    plain = tmp_path / "plain.nrrd"
    sitk.WriteImage(img, str(plain))
    assert main(["bed", "--alpha-beta", "3", str(a), str(plain), "-o", str(tmp_path / "ok.nrrd")]) == 0
    img.SetMetaData("FrameOfReferenceUID", "1.2.3.555")
    tagged = tmp_path / "tagged.nrrd"
    sitk.WriteImage(img, str(tagged))
    capsys.readouterr()
    assert main(["bed", "--alpha-beta", "3", str(a), str(tagged), "-o", str(tmp_path / "no.nrrd")]) == 2
    assert "1.2.3.555" in capsys.readouterr().err
    assert "NRRD" in bed.DESCRIPTION and "PatientID" in bed.DESCRIPTION


# --- 8. truncated RTSTRUCT ----------------------------------------------------------------------
def test_truncated_rtstruct_item_is_an_input_error(tmp_path):
    from COMPASSLib.io.ct import read_ct_series
    from COMPASSLib.io.rtstruct import list_rois, read_rtstruct

    ct = read_ct_series(write_series(tmp_path / "ct", np.zeros((6, 8, 8), np.int16), spacing=(2.0, 2.0, 3.0)))
    path = write_rtstruct(tmp_path / "RS.dcm", {"Heart": [square(8, 8, 3.0, 4)], "Cord": [square(6, 6, 6.0, 2)]})
    ds = pydicom.dcmread(path)
    del ds.ROIContourSequence[1].ReferencedROINumber
    ds.save_as(path)
    with pytest.raises(InputError, match=r"ROIContourSequence item 2 has no ReferencedROINumber") as err:
        read_rtstruct(path, ct, patient="P1", fraction=2)
    assert err.value.file == str(path) and "fraction 2" in _one_line(err.value)

    ds = pydicom.dcmread(path)
    del ds.StructureSetROISequence[0].ROINumber
    ds.save_as(path)
    with pytest.raises(InputError, match=r"StructureSetROISequence item 1 \(ROI 'Heart'\) has no ROINumber"):
        list_rois(path)
