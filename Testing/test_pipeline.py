"""The main job end to end on real synthetic DICOM (the `small_cohort` fixture, fast feature profile):
`compass run`, `compass report`, and `compass update` computing only the new fraction."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from COMPASSLib.cli import main
from COMPASSLib.cohort import Cohort
from COMPASSLib.pipeline import write_subset
from COMPASSLib.provenance import sha256_file

FAST = ["--profile", "fast", "--epochs", "10", "--bootstrap", "50"]


def _manifest(small_cohort, out, fractions, patients=None):
    return write_subset(small_cohort, out, fractions, patients)   # the fixture itself is never modified


@pytest.fixture(scope="module")
def run_out(small_cohort, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    before = sha256_file(small_cohort)
    manifest = _manifest(small_cohort, tmp / "two_fractions", fractions=2)
    rc = main(["run", str(manifest), "-o", str(tmp / "out"), *FAST, "--texture-maps", "Heart",
               "--texture-fractions", "2"])
    assert rc == 0
    assert sha256_file(small_cohort) == before
    return tmp / "out"


def test_run_writes_metrics_risk_model_and_report(run_out):
    m = json.loads((run_out / "metrics.json").read_text())
    for k in ("auc", "sensitivity", "specificity", "brier", "lkb_auc", "mean_dose_auc"):
        assert set(m[k]) == {"value", "ci95"} and len(m[k]["ci95"]) == 2
    assert m["n_trajectories"] == 9                       # 3 patients x 3 organs
    assert "value" in m["lead_time_fractions"]
    assert m["provenance"]["versions"]["torch"] and m["provenance"]["settings"]["features"]["profile"] == "fast"
    assert m["baselines"]["geud_column"] == "dvh_eqd2_geud_gy"
    risk = pd.read_csv(run_out / "risk.csv")
    assert list(risk.columns[:8]) == ["patient", "organ", "fraction", "risk", "ci_low", "ci_high", "warning",
                                      "top_features"]
    assert len(risk) == 9 * 2 and risk["risk"].between(0, 1).all()
    assert sorted(p.name for p in (run_out / "model").iterdir()) == ["model.json", "weights.safetensors"]
    html = (run_out / "report.html").read_text()
    for alt in ("ROC curves", "reliability diagram", "AUC after each fraction", "BED texture map"):
        assert f"<img alt='{alt}' src='data:image/png;base64," in html
    assert html.count("<img alt='risk over fractions of ") == m["n_patients"] and "LKB" in html


def test_run_writes_texture_maps_for_chosen_organs_and_fractions(run_out):
    import SimpleITK as sitk

    tm = json.loads((run_out / "metrics.json").read_text())["texture_maps"]
    assert tm["settings"]["features"] == ["glcm:Contrast", "glcm:JointEntropy", "firstorder:Entropy"]
    assert len(tm["maps"]) == 3 * 3 and {(r["organ"], r["fraction"]) for r in tm["maps"]} == {("Heart", 2)}
    for r in tm["maps"]:
        path = run_out / r["path"]
        assert path.parent == run_out / "texture" / r["patient"] / "fx2"
        assert path.name == f"Heart_{r['feature'].replace(':', '_')}.nrrd"
        assert sitk.ReadImage(str(path)).GetSize() == sitk.ReadImage(str(path.parent / "ct.nrrd")).GetSize()
        prov = json.loads((path.parent / "texture_maps.json").read_text())
        assert path.name in prov["outputs"] and prov["settings"]["texture"]["bin_width_gy"] == 2.0


def test_report_regenerates(run_out, capsys):
    (run_out / "report.html").unlink()
    assert main(["report", str(run_out)]) == 0
    assert (run_out / "report.html").is_file() and "report.html" in capsys.readouterr().out
    assert main(["report", str(run_out / "model")]) == 2          # not a run folder: one-line error


def test_update_computes_only_the_new_fraction(run_out, small_cohort, tmp_path, capsys):
    pid = Cohort.load(small_cohort).patients[0].id
    patient_dir = _manifest(small_cohort, tmp_path / "arrived", fractions=3, patients=[pid]).parent
    capsys.readouterr()
    assert main(["update", str(run_out / "model"), str(patient_dir)]) == 0
    out = capsys.readouterr().out
    assert f"{pid}: computed fraction(s) [3]" in out
    assert out.count("after fraction 3: risk") == 3 and "top:" in out
    # the same patient as a plain DICOM folder (scanned): everything is in the cache now, same risks
    assert main(["update", str(run_out / "model"), str(Path(small_cohort).parent / pid)]) == 0
    again = capsys.readouterr().out
    assert f"{pid}: computed fraction(s) none (all cached)" in again
    assert again.splitlines()[1:] == out.splitlines()[1:]


def test_run_without_outcomes_is_a_clear_error(small_cohort, tmp_path, capsys):
    manifest = _manifest(small_cohort, tmp_path / "c", fractions=1)
    d = json.loads(manifest.read_text())
    d["outcomes"] = "missing.csv"
    manifest.write_text(json.dumps(d))
    assert main(["run", str(manifest), "-o", str(tmp_path / "o"), *FAST]) == 2
    assert "no outcomes" in capsys.readouterr().err


def test_slicer_bridge_shows_the_run_texture_maps(run_out):
    import slicer  # noqa: F401  (pinned test dependency)
    from COMPASSLib import mrml
    from COMPASSLib.errors import InputError

    pid = json.loads((run_out / "metrics.json").read_text())["texture_maps"]["maps"][0]["patient"]
    scene = mrml.new_scene()
    try:
        nodes = mrml.add_texture_files(run_out, pid, 2, scene)
        assert sorted(n.GetAttribute("COMPASS.file") for n in nodes) == [
            "Heart_firstorder_Entropy.nrrd", "Heart_glcm_Contrast.nrrd", "Heart_glcm_JointEntropy.nrrd"]
        assert all(n.GetDisplayNode().GetColorNodeID() == mrml.texture_colour_table(scene).GetID() for n in nodes)
        assert any(n.GetAttribute("COMPASS.modality") == "ct" for n in mrml.nodes_by_class(scene, "vtkMRMLScalarVolumeNode"))
        with pytest.raises(InputError, match="no texture maps"):
            mrml.add_texture_files(run_out, pid, 1, scene)            # fraction 1 was not mapped
    finally:
        mrml.release_scene(scene)
