"""What if (COMPASSLib.twin.whatif, `compass whatif`) on real synthetic DICOM (the `small_cohort` fixture):
dose features of a projected fraction equal the real fraction's when its real dose is replayed as the plan,
an organ's scaled dose gives the BED of the published formula voxel by voxel, bad scenarios fail clearly
and leave no output, and the command writes its contract's files and columns."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from COMPASSLib.cli import main
from COMPASSLib.cohort import Cohort
from COMPASSLib.errors import InputError
from COMPASSLib.twin import whatif

PATIENT = "SYN001"
CONTRACT = ["scenario", "patient", "organ", "fraction", "delivered", "bed_mean_gy", "eqd2_mean_gy", "risk",
            "ci_low", "ci_high", "lkb_ntcp"]


@pytest.fixture(scope="module")
def trained(small_twin):
    """The session's twin fitted on the fixture (conftest.small_twin: fast profile, few epochs, saved as
    `compass run` saves it), with features.csv beside model/ (the forecast's training residuals) and the
    filled cache; and its feature table."""
    out = small_twin.parent
    return out, pd.read_csv(out / "features.csv", dtype={"patient": str})


def _one_patient(small_cohort):
    return whatif.delivered_subset(Cohort.load(small_cohort), PATIENT, 3)


def test_replayed_plan_gives_the_real_fractions_dose_features(trained, small_cohort):
    """After fraction 2, projecting fraction 3 with its real RTDOSE as the plan gives bitwise the dose
    features the feature table has for the real fraction 3 (same code, same running sums)."""
    out, table = trained
    cohort = _one_patient(small_cohort)
    rd = cohort.path(cohort.patient(PATIENT).fraction(3).dose[0])
    frame, feats = whatif.project(out / "model", cohort, 2, whatif.scenarios_from_options([], [str(rd)]),
                                  cache_dir=out / "cache", features=True, draws=4)
    real = table[(table["patient"] == PATIENT) & (table["fraction"] == 3)].set_index("organ").sort_index()
    proj = feats[(feats["scenario"] == rd.name) & (feats["fraction"] == 3)].set_index("organ").sort_index()
    dose_cols = [c for c in real.columns if c.startswith(("bed_", "dvh_", "dose_", "tex_", "shape_"))]
    assert len(dose_cols) > 30 and list(real.index) == list(proj.index)
    np.testing.assert_array_equal(proj[dose_cols].to_numpy(float), real[dose_cols].to_numpy(float))
    # the delivered part is the table's own; forecast image columns exist and are finite
    delivered = frame[frame["delivered"]]
    assert set(delivered["fraction"]) == {1, 2}
    assert np.isfinite(proj["pet_suv_mean"]).all()


def test_scaled_organ_bed_is_the_formula_voxel_by_voxel(trained, small_cohort):
    """Heart=0.5 after fraction 1 of 3: the heart's projected cumulative BED in every voxel is
    BED_1 + 2 x (0.5 d)(1 + 0.5 d / (a/b)) (d: fraction 1's dose, a/b 3 Gy), and as planned 3 d (1 + d/3);
    the formula's own check: 2 Gy x 30 at a/b 3 is the published 100 Gy."""
    from COMPASSLib.ingest import PatientLoader

    out, _ = trained
    assert 30 * 2.0 * (1 + 2.0 / 3.0) == pytest.approx(100.0)
    cohort = _one_patient(small_cohort)
    loaded = PatientLoader(cohort, PATIENT, modalities=("dose", "rtstruct"), organs=["Heart"]).load(1)
    d = sitk.GetArrayFromImage(loaded.dose).astype(np.float64)
    heart = sitk.GetArrayFromImage(loaded.masks["Heart"]) > 0
    ab = 3.0
    bed1 = d * (1 + d / ab)
    f = np.where(heart, 0.5, 1.0) * d
    expected = bed1 + 2 * f * (1 + f / ab)
    img = whatif.projected_bed_image(out / "model", cohort, PATIENT, 1, "Heart", "Heart=0.5")
    got = sitk.GetArrayFromImage(img)
    assert img.GetMetaData("COMPASS_alpha_beta_gy") == "3.0"
    np.testing.assert_allclose(got, expected, rtol=2e-6, atol=1e-6)   # float32 running sums
    planned = sitk.GetArrayFromImage(whatif.projected_bed_image(out / "model", cohort, PATIENT, 1, "Heart"))
    np.testing.assert_allclose(planned, 3 * bed1, rtol=2e-6, atol=1e-6)

    # the same projection with the BED images from its own course (what the Slicer module shows); a loaded
    # twin finds its training table beside its folder as the path does
    from COMPASSLib.twin.model import CompassTwin

    frame, images = whatif.project(CompassTwin.load(out / "model"), cohort, 1,
                                   whatif.scenarios_from_options(["Heart=0.5"]), cache_dir=out / "cache", draws=4,
                                   bed_of=["Heart"])
    assert sorted(images) == [("Heart=0.5", PATIENT, "Heart"), ("as_planned", PATIENT, "Heart")]
    np.testing.assert_array_equal(sitk.GetArrayFromImage(images[("Heart=0.5", PATIENT, "Heart")]), got)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(images[("as_planned", PATIENT, "Heart")]), planned)
    again = whatif.project(out / "model", cohort, 1, whatif.scenarios_from_options(["Heart=0.5"]),
                           cache_dir=out / "cache", draws=4)
    pd.testing.assert_frame_equal(frame, again)
    last = frame[frame["fraction"] == 3].set_index(["scenario", "organ"])
    assert last.loc[("Heart=0.5", "Heart"), "bed_mean_gy"] == pytest.approx(expected[heart].mean(), rel=1e-5)
    assert last.loc[("as_planned", "Heart"), "bed_mean_gy"] == pytest.approx(3 * bed1[heart].mean(), rel=1e-5)
    # other organs keep their as-planned dose outside the heart
    eso = last.xs("Esophagus", level="organ")["bed_mean_gy"]
    assert eso["Heart=0.5"] <= eso["as_planned"]
    assert (frame["ci_low"] <= frame["ci_high"]).all()
    # delivered fractions: the twin's own risk and interval, as `compass update` reports them
    from COMPASSLib.pipeline import score

    own = score(out / "model", cohort, cache_dir=out / "cache").set_index(["organ", "fraction"])
    mine = frame[frame["delivered"]].set_index(["organ", "fraction"])
    for col in ("risk", "ci_low", "ci_high"):
        np.testing.assert_allclose(mine[col].to_numpy(), own.loc[mine.index, col].to_numpy(), rtol=1e-12)


@pytest.mark.parametrize("options, message", [
    (["--scale", "Liver=0.5"], "unknown organ 'Liver'; the twin knows"),
    (["--scale", "Heart=-0.2"], "must be a number >= 0"),
    (["--scale", "Heart"], "expected ORGAN=FACTOR"),
    (["--after", "4"], "beyond the delivered fractions"),
    (["--after", "0"], "whole number >= 1"),
    (["--fractions", "2"], "leave none after fraction 2"),
    (["--plan", "OTHER"], "FrameOfReferenceUID"),
])
def test_bad_scenarios_fail_clearly_and_write_nothing(trained, small_cohort, tmp_path, capsys, options, message):
    out, _ = trained
    cohort = Cohort.load(small_cohort)
    other = str(cohort.path(cohort.patient("SYN002").fraction(3).dose[0]))
    options = [other if o == "OTHER" else o for o in options]
    after = [] if "--after" in options else ["--after", "2"]
    target = tmp_path / "w"
    rc = main(["whatif", str(out / "model"), str(Path(small_cohort).parent / PATIENT), *after, *options,
               "-o", str(target)])
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err
    if "unknown organ" in message:
        assert "SpinalCord" in err and "Heart" in err
    assert not target.exists() and not list(tmp_path.iterdir())


def test_scale_parsing():
    s = whatif.parse_scale("Heart=0.5,Esophagus=0.8")
    assert s.name == "Heart=0.5,Esophagus=0.8" and s.scale == (("Heart", 0.5), ("Esophagus", 0.8))
    with pytest.raises(InputError, match="not a number"):
        whatif.parse_scale("Heart=half")
    names = [s.name for s in whatif.scenarios_from_options(["Heart=0.5"], ["/x/RD3.dcm"], 2)]
    assert names == ["as_planned", "Heart=0.5", "RD3.dcm", "fractions=2"]


def test_cli_contract(trained, small_cohort, tmp_path, capsys):
    """One patient's DICOM folder, three scenarios: whatif.csv/json/png, the contract's columns, rows per
    scenario x organ x fraction, delivered fractions identical in every scenario."""
    out, _ = trained
    target = tmp_path / "w"
    target.mkdir()
    (target / "keep.txt").write_text("other entries of OUT are kept")
    rc = main(["whatif", str(out / "model"), str(Path(small_cohort).parent / PATIENT), "--after", "1",
               "--scale", "Heart=0.5", "--fractions", "2", "--draws", "5", "-o", str(target)])
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt", "whatif.csv", "whatif.json", "whatif.png"]
    csv = pd.read_csv(target / "whatif.csv")
    assert list(csv.columns[:len(CONTRACT)]) == CONTRACT
    assert list(dict.fromkeys(csv["scenario"])) == ["as_planned", "Heart=0.5", "fractions=2"]
    counts = csv.groupby("scenario").size()
    assert counts["as_planned"] == counts["Heart=0.5"] == 3 * 3 and counts["fractions=2"] == 3 * 2
    first = csv[csv["fraction"] == 1].groupby("organ")["risk"].nunique()
    assert (first == 1).all() and csv[csv["fraction"] == 1]["delivered"].all()
    doc = json.loads((target / "whatif.json").read_text())
    assert doc["columns"][:len(CONTRACT)] == CONTRACT and len(doc["rows"]) == len(csv)
    settings = doc["provenance"]["settings"]
    assert settings["after"] == 1 and settings["forecast"]["residuals"] == "training trajectories"
    assert (target / "whatif.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_projects_the_highest_risk_warned_patients_only(small_cohort, monkeypatch):
    """warned_projections picks at most max_patients warned patients, highest risk first, each after its
    first warned fraction, with one spared scenario per warned organ (project itself is tested above)."""
    from COMPASSLib.twin import whatif

    calls = []

    def project(model, cohort, after, scenarios, **kw):
        calls.append((cohort.patient_ids, after, [s.name for s in scenarios]))
        return pd.DataFrame({"patient": cohort.patient_ids, "scenario": ["as_planned"]})

    monkeypatch.setattr(whatif, "project", project)
    risk = pd.DataFrame([dict(patient=p, organ=o, fraction=k, risk=r * k / 3, warning=r * k / 3 >= 0.5)
                         for p, r in (("SYN001", 0.9), ("SYN002", 0.99), ("SYN003", 0.6))
                         for o in ("Heart", "Esophagus") for k in (1, 2, 3)])
    out = whatif.warned_projections("model", Cohort.load(small_cohort), risk, 0.7, max_patients=2)
    assert calls == [(["SYN001"], 2, ["as_planned", "Esophagus=0.7", "Heart=0.7"]),
                     (["SYN002"], 2, ["as_planned", "Esophagus=0.7", "Heart=0.7"])]
    assert list(out["after"]) == [2, 2]


def test_the_change_against_as_planned_pairs_the_draws(trained, small_cohort):
    """`change` is the scenario's risk minus as planned's, its interval the quantiles of the paired
    differences (the same forecast draws in every scenario, each ensemble member against itself): a plan
    that repeats fraction 2's dose, as as planned does, changes nothing, interval [0, 0] (independent draws
    would give it the width of two forecasts' noise); a spared heart's change lies in its own interval."""
    out, _ = trained
    cohort = _one_patient(small_cohort)
    same = str(cohort.path(cohort.patient(PATIENT).fraction(2).dose[0]))
    scenarios = whatif.scenarios_from_options(["Heart=0.5"], [same])
    frame = whatif.project(out / "model", cohort, 2, scenarios, cache_dir=out / "cache", draws=8)
    future = frame[~frame["delivered"]].set_index(["scenario", "organ", "fraction"]).sort_index()
    planned = future.loc["as_planned"]
    assert (frame.loc[frame["delivered"], ["change", "change_low", "change_high"]] == 0).all().all()
    repeat = future.loc[Path(same).name]
    np.testing.assert_array_equal(repeat["risk"].to_numpy(), planned["risk"].to_numpy())
    assert (repeat[["change", "change_low", "change_high"]] == 0).all().all()
    assert (repeat["ci_high"] > repeat["ci_low"]).all()   # the risks themselves keep their interval
    spared = future.loc["Heart=0.5"]
    np.testing.assert_allclose(spared["change"], spared["risk"] - planned["risk"], atol=1e-15)
    assert (spared["change_low"] <= spared["change"]).all() and (spared["change"] <= spared["change_high"]).all()
    assert (spared.loc["Heart", "change_high"] > spared.loc["Heart", "change_low"]).all()
