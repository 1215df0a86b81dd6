"""The cohort feature table on the small synthetic cohort (real DICOM): dosiomics equal to pyradiomics run
directly on the exported BED map, cache reruns, missing PET / dose, Dask and process-pool runs, clinical
join and the `compass features` command."""
from __future__ import annotations

import copy
import json
import math

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from COMPASSLib.cli import main
from COMPASSLib.cohort import Cohort
from COMPASSLib.errors import InputError
from COMPASSLib.features.clinical import join_clinical
from COMPASSLib.features.settings import RADIOMICS_CLASSES, FeatureSettings
from COMPASSLib.features.table import FeatureWarning, extract_cohort

FAST = FeatureSettings(profile="fast")


def _variant(small_cohort, tmp_path, edit=None, name="cohort.json") -> Cohort:
    """A copy of the manifest (not the files: paths made absolute) in tmp_path, edited by `edit`."""
    cohort = Cohort.load(small_cohort)
    for p in cohort.patients:
        for f in [*p.fractions, *([p.planning] if p.planning else [])]:
            for m in ("ct", "pet", "dose", "rtstruct"):
                setattr(f, m, [str(cohort.path(x)) for x in f.files(m)])
    variant = Cohort(copy.deepcopy(cohort.patients), root=tmp_path, outcomes_file=str(cohort.path("outcomes.csv")))
    if edit:
        edit(variant)
    variant.save(tmp_path / name)
    return Cohort.load(tmp_path / name)


@pytest.fixture(scope="module")
def fast_table(small_cohort):
    return extract_cohort(small_cohort, FAST)


def test_table_layout(fast_table, small_cohort):
    t = fast_table
    cohort = Cohort.load(small_cohort)
    assert list(t.columns[:3]) == ["patient", "organ", "fraction"]
    groups = [c.split("_", 1)[0] for c in t.columns[3:]]
    assert groups == sorted(groups, key=["bed", "dvh", "pet"].index)    # grouped, in the documented order
    assert len(t) == len(cohort.patients) * 3 * 3 and not t.attrs["failures"]
    assert set(t["organ"]) == {"SpinalCord", "Heart", "Esophagus"}
    # cumulative BED grows with each fraction; the increments add up to it
    for _, g in t.groupby(["patient", "organ"]):
        assert np.all(np.diff(g["bed_mean_gy"]) > 0)
        assert g["bed_inc_mean_gy"].sum() == pytest.approx(g["bed_mean_gy"].iloc[-1])
        assert g["pet_delta_suv_mean"].iloc[0] == 0.0
    heart = t[t.organ == "Heart"]
    assert (heart["bed_alpha_beta_gy"] == 3.0).all()
    # EQD2 from BED at the organ's alpha/beta (Fowler): EQD2 = BED / (1 + 2/(a/b)) for the maximum
    assert np.allclose(heart["dvh_eqd2_max_gy"], heart["bed_max_gy"] / (1 + 2 / 3.0))



def test_one_loader_per_patient_gives_the_per_fraction_ingest_numbers(small_cohort, fast_table, monkeypatch):
    """The table from one PatientLoader per patient (grid and structures read once, no CT in the fast
    profile, masks of the scored organs only, extractors built once) is identical, bit for bit, to the
    table from a full, independent `load_fraction` for every fraction (how the table was first built)."""
    from COMPASSLib import ingest
    from COMPASSLib.features.fraction import needed_modalities

    assert needed_modalities(FAST) == ("pet", "dose", "rtstruct")
    assert needed_modalities(FeatureSettings(profile="full"))[0] == "ct"

    loader = ingest.PatientLoader

    class EveryFractionFromScratch:   # what load_fraction does: a new full loader (all modalities, organs)
        def __init__(self, cohort, patient_id, reference="ct", **_ignored):
            self.cohort, self.patient_id, self.reference = cohort, patient_id, reference

        def load(self, k):
            return loader(self.cohort, self.patient_id, self.reference).load(k)

    monkeypatch.setattr(ingest, "PatientLoader", EveryFractionFromScratch)
    reference = extract_cohort(small_cohort, FAST)
    pd.testing.assert_frame_equal(fast_table, reference, check_exact=True)

def _direct_bed_map(cohort, patient, k, organ, alpha_beta, tmp_path):
    """Cumulative BED after fraction k written to NRRD, from the ingested doses with the LQ formula."""
    from COMPASSLib.ingest import load_fraction

    bed, mask = None, None
    for j in range(1, k + 1):
        fi = load_fraction(cohort, patient, j)
        d = sitk.GetArrayFromImage(fi.dose).astype(np.float64)
        bed = d * (1 + d / alpha_beta) + (0 if bed is None else bed)
        mask, ref = fi.masks[organ], fi.dose
    img = sitk.GetImageFromArray(bed.astype(np.float32))
    img.CopyInformation(ref)
    sitk.WriteImage(img, str(tmp_path / "bed.nrrd"))
    sitk.WriteImage(mask, str(tmp_path / "mask.nrrd"))
    return tmp_path / "bed.nrrd", tmp_path / "mask.nrrd"


def test_dosiomics_equal_pyradiomics_on_exported_bed_map(small_cohort, tmp_path):
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    from COMPASSLib.resources import resource_path

    settings = FeatureSettings(radiomics={"dose": RADIOMICS_CLASSES}, shape=False, organs=["Heart"])
    cohort = Cohort.load(small_cohort)
    pid = cohort.patient_ids[0]
    t = extract_cohort(small_cohort, settings)
    row = t[(t.patient == pid) & (t.organ == "Heart") & (t.fraction == 3)].iloc[0]
    bed_path, mask_path = _direct_bed_map(cohort, pid, 3, "Heart", 3.0, tmp_path)
    direct = RadiomicsFeatureExtractor(str(resource_path("radiomics", "dose.yaml"))).execute(str(bed_path),
                                                                                             str(mask_path))
    features = {k[len("original_"):]: float(v) for k, v in direct.items() if k.startswith("original_")}
    assert len(features) > 90 and "glcm_Contrast" in features
    for name, value in features.items():
        assert row[f"dose_{name}"] == pytest.approx(value, rel=1e-5, abs=1e-9), name
    assert row["bed_max_gy"] == pytest.approx(features["firstorder_Maximum"], rel=1e-5)


def test_cached_rerun_after_new_fraction_computes_only_it(small_cohort, tmp_path, fast_table):
    def first_two(c):
        for p in c.patients:
            p.fractions = p.fractions[:2]

    cache = tmp_path / "cache"
    partial = _variant(small_cohort, tmp_path, first_two, "partial.json")
    t2 = extract_cohort(partial, FAST, cache_dir=cache)
    assert all(v == [1, 2] for v in t2.attrs["computed"].values())
    full = _variant(small_cohort, tmp_path, None, "full.json")
    t3 = extract_cohort(full, FAST, cache_dir=cache)
    assert all(v == [3] for v in t3.attrs["computed"].values())
    pd.testing.assert_frame_equal(t3, fast_table, check_exact=False, rtol=1e-6)
    # a rerun with nothing new computes nothing; other settings do not reuse the cache
    t4 = extract_cohort(full, FAST, cache_dir=cache)
    assert all(v == [] for v in t4.attrs["computed"].values())
    other = FeatureSettings(profile="fast", alpha_beta={"Heart": 2.0}, organs=["Heart"])
    t5 = extract_cohort(full, other, cache_dir=cache)
    assert all(v == [1, 2, 3] for v in t5.attrs["computed"].values())
    assert (t5["bed_alpha_beta_gy"] == 2.0).all()

    # cumulative BED after k depends on every earlier dose: a new dose for fraction 1 invalidates 2 and 3
    def new_first_dose(c):
        c.patients = c.patients[:1]
        c.patients[0].fractions[0].dose = c.patients[0].fractions[1].dose

    changed = _variant(small_cohort, tmp_path, new_first_dose, "changed.json")
    t6 = extract_cohort(changed, other, cache_dir=cache)
    assert t6.attrs["computed"] == {changed.patient_ids[0]: [1, 2, 3]}


def test_missing_pet_gives_nan_and_warning(small_cohort, tmp_path):
    def drop_pet(c):
        c.patients = c.patients[1:2]
        c.patients[0].fractions[1].pet = []

    cohort = _variant(small_cohort, tmp_path, drop_pet)
    pid = cohort.patient_ids[0]
    with pytest.warns(FeatureWarning, match=f"no PET for patient {pid} fraction 2"):
        t = extract_cohort(cohort, FeatureSettings(profile="fast", organs=["Esophagus"]))
    pet_cols = [c for c in t.columns if c.startswith("pet_")]
    assert len(pet_cols) > 10
    f2 = t[t.fraction == 2]
    assert f2[pet_cols].isna().all(axis=None)
    assert t[t.fraction != 2][pet_cols].notna().all(axis=None)
    assert f2["bed_mean_gy"].notna().all()


def test_missing_dose_stops_that_patient_only_cli(small_cohort, tmp_path, fast_table, capsys):
    def lose_dose(c):
        c.patients[0].fractions[1].dose = [str(tmp_path / "gone" / "RD.dcm")]

    cohort = _variant(small_cohort, tmp_path, lose_dose)
    bad = cohort.patient_ids[0]
    out = tmp_path / "features.csv"
    rc = main(["features", str(tmp_path / "cohort.json"), "-o", str(out), "--profile", "fast", "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"patient {bad}" in err and "fraction 2" in err and "dose" in err and "RD.dcm" in err
    t = pd.read_csv(out)
    assert bad not in set(t.patient) and set(t.patient) == set(cohort.patient_ids[1:])
    expected = fast_table[fast_table.patient != bad].reset_index(drop=True)
    pd.testing.assert_frame_equal(t, expected, check_exact=False, rtol=1e-6, check_dtype=False)
    side = json.loads((tmp_path / "features.csv.json").read_text())
    assert bad in side["failures"] and side["settings"]["profile"] == "fast"
    assert side["versions"]["pyradiomics"] and len(side["inputs"]["fractions_sha256"][cohort.patient_ids[1]]) == 3


def test_dask_local_cluster_and_process_pool_equal_local_run(small_cohort, fast_table):
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        t = extract_cohort(small_cohort, FAST, scheduler=cluster.scheduler_address)
    pd.testing.assert_frame_equal(t, fast_table)
    t = extract_cohort(small_cohort, FAST, workers=2)
    pd.testing.assert_frame_equal(t, fast_table)


def test_clinical_join(fast_table, tmp_path, small_cohort):
    pid = fast_table.patient.iloc[0]
    csv = tmp_path / "clinical.csv"
    csv.write_text(f"patient,fraction,WBC count,Dysphagia (PRO)\n{pid},1,6.1,0\n{pid},3,4.2,2\n")
    t = join_clinical(fast_table, csv)
    assert len(t) == len(fast_table) and list(t.columns[-2:]) == ["clin_wbc_count", "clin_dysphagia_pro"]
    mine = t[t.patient == pid].set_index(["organ", "fraction"])
    assert mine.loc[("Heart", 3), "clin_wbc_count"] == 4.2 and mine.loc[("Heart", 1), "clin_dysphagia_pro"] == 0
    assert math.isnan(mine.loc[("Heart", 2), "clin_wbc_count"])
    assert t[t.patient != pid]["clin_wbc_count"].isna().all()
    csv.write_text(f"patient,fraction,WBC\n{pid},1,6.1\n{pid},1,6.3\n")
    with pytest.raises(InputError, match=f"more than one row.*patient {pid}, fraction 1.*clinical.csv"):
        join_clinical(fast_table, csv)
    csv.write_text("patient,WBC\nX,1\n")
    with pytest.raises(InputError, match="lacks column.*fraction"):
        join_clinical(fast_table, csv)


def test_cli_parquet_with_clinical_and_cache(small_cohort, tmp_path, fast_table):
    pid = fast_table.patient.iloc[0]
    csv = tmp_path / "clin.csv"
    csv.write_text(f"patient,fraction,crp\n{pid},2,12.5\n")
    out = tmp_path / "t.parquet"
    args = ["features", str(small_cohort), "-o", str(out), "--profile", "fast", "--no-progress",
            "--clinical", str(csv), "--cache", str(tmp_path / "cache")]
    assert main(args) == 0
    t = pd.read_parquet(out)
    assert list(t.columns) == list(fast_table.columns) + ["clin_crp"]
    assert t.loc[(t.patient == pid) & (t.fraction == 2), "clin_crp"].eq(12.5).all()
    side = json.loads((tmp_path / "t.parquet.json").read_text())
    assert side["inputs"]["clinical"]["sha256"] and not side["failures"]
    assert main(args) == 0   # rerun from the cache
    assert json.loads((tmp_path / "t.parquet.json").read_text())["computed"] == {p: [] for p in side["computed"]}
