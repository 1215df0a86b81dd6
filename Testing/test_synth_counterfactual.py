"""The generator's counterfactual (synth.counterfactual, `compass synth --counterfactual`): the same patient
with the fractions after K changed. Byte-identical up to K, the original probabilities and files when
nothing changes, a spared organ less at risk while the others stay (nearly) where they were, the same
physical dose in fewer fractions more toxic (higher BED), and clear errors for bad scenarios.
On the session's small cohort (3 patients x 3 fractions, seed 11)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.ndimage import distance_transform_edt

from COMPASSLib.cli import main
from COMPASSLib.cohort import Cohort
from COMPASSLib.errors import InputError
from COMPASSLib.io.rtdose import read_rtdose
from COMPASSLib.scan import scan
from COMPASSLib.synth import toxicity
from COMPASSLib.synth.counterfactual import (SPARING_FALLOFF_MM, counterfactual_patient, resimulate_patient,
                                             true_probability)

from test_synth_determinism import file_hashes


@pytest.fixture(scope="module")
def cohort(small_cohort):
    return small_cohort.parent


@pytest.fixture(scope="module")
def truth(cohort):
    """patient -> organ -> the probability ground_truth.json records (the generator's own)."""
    gt = json.loads((cohort / "ground_truth.json").read_text())
    return {p["id"]: {r["organ"]: r["probability"] for r in p["organs"]} for p in gt["patients"]}


def _patient_files(root, pid, sessions=None):
    return {k: v for k, v in file_hashes(root / pid).items() if sessions is None or k.split("/")[0] in sessions}


def test_nothing_changed_gives_the_recorded_probabilities(cohort, truth):
    for pid, recorded in truth.items():
        assert true_probability(cohort, pid, 1) == recorded
    assert true_probability(cohort, "SYN002", 2, scale={o: 1.0 for o in toxicity.ORGANS}, fractions=3) \
        == truth["SYN002"]


def test_sparing_an_organ_lowers_its_probability(cohort, truth):
    for pid, recorded in truth.items():
        for organ in toxicity.ORGANS:
            p = true_probability(cohort, pid, 1, scale={organ: 0.5})
            assert p[organ] < recorded[organ], (pid, organ)
    escalated = true_probability(cohort, "SYN002", 1, scale={"Heart": 1.2})
    assert escalated["Heart"] > truth["SYN002"]["Heart"]


def test_other_organs_nearly_unchanged(cohort, truth):
    # SYN002 (peripheral tumour): sparing the heart, which had a 50 % risk, changes the cord and the
    # esophagus by under 1 % while the heart falls by 0.17
    p = true_probability(cohort, "SYN002", 1, scale={"Heart": 0.5})
    change = {o: p[o] - truth["SYN002"][o] for o in toxicity.ORGANS}
    assert change["Heart"] < -0.1
    assert abs(change["SpinalCord"]) < 0.01 and abs(change["Esophagus"]) < 0.01
    # sparing the cord, inside its vertebra, leaves the heart and esophagus alone
    p = true_probability(cohort, "SYN001", 1, scale={"SpinalCord": 0.5})
    assert p["SpinalCord"] < truth["SYN001"]["SpinalCord"] - 0.1
    assert all(abs(p[o] - truth["SYN001"][o]) < 0.002 for o in ("Heart", "Esophagus"))


def test_same_dose_in_fewer_fractions_is_more_toxic(cohort, truth):
    sim, original, _ = counterfactual_patient(cohort, "SYN001", 1, fractions=2)
    assert sim.fractions == 2 and np.array_equal(sim.doses_gy[0], original.doses_gy[0])
    np.testing.assert_allclose(sum(sim.doses_gy), sum(original.doses_gy), rtol=1e-12, atol=1e-12)
    for organ in toxicity.ORGANS:
        assert sim.signals[organ]["mean_bed_gy"] > original.signals[organ]["mean_bed_gy"]
        assert sim.outcomes[organ]["probability"] >= truth["SYN001"][organ]


def test_resimulated_patient_is_the_original_up_to_k(cohort, tmp_path, capsys):
    out = tmp_path / "heart_half"
    argv = ["synth", str(out), "--counterfactual", str(cohort), "--patient", "SYN002", "--after", "1",
            "--scale", "Heart=0.5"]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == str(out / "cohort.json")
    new, old = _patient_files(out, "SYN002"), _patient_files(cohort, "SYN002")
    assert set(new) == set(old)
    same = {k for k in new if new[k] == old[k]}
    assert same == {k for k in new if k.split("/")[0] in ("plan", "F1")}     # byte-identical exactly to K
    # the written cohort reads as any other: manifest = scan, outcomes, the truth it records
    manifest = Cohort.load(out / "cohort.json")
    assert [p.id for p in manifest.patients] == ["SYN002"] and len(manifest.patients[0].fractions) == 3
    assert scan(out).to_dict()["patients"] == manifest.to_dict()["patients"]
    gt = json.loads((out / "ground_truth.json").read_text())
    recorded = {r["organ"]: r["probability"] for r in gt["patients"][0]["organs"]}
    assert recorded == true_probability(cohort, "SYN002", 1, scale={"Heart": 0.5})
    assert gt["patients"][0]["counterfactual"]["scale"] == {"Heart": 0.5}
    # fraction 2's dose: half inside the heart, unchanged far from it
    _, original, _ = counterfactual_patient(cohort, "SYN002", 1)
    heart = original.masks[0]["Heart"]
    d_new, d_old = (sitk.GetArrayFromImage(read_rtdose(root / "SYN002" / "F2" / "RD.dcm")) for root in (out, cohort))
    hot = heart & (d_old > 0.05 * d_old.max())
    np.testing.assert_allclose(d_new[hot], 0.5 * d_old[hot], rtol=2e-3, atol=1e-4)
    spacing = original.grid.spacing_mm[::-1]
    far = (distance_transform_edt(~heart, sampling=spacing) > 4 * SPARING_FALLOFF_MM) & (d_old > 0.05 * d_old.max())
    assert far.sum() > 100
    np.testing.assert_allclose(d_new[far], d_old[far], rtol=2e-3)


def test_unchanged_scenario_rewrites_the_original_files(cohort, tmp_path):
    out = resimulate_patient(cohort, "SYN003", 1, tmp_path / "same", scale={"Heart": 1.0})
    assert _patient_files(out.parent, "SYN003") == _patient_files(cohort, "SYN003")
    rows = [line for line in (cohort / "outcomes.csv").read_text().splitlines() if line.startswith("SYN003,")]
    assert (out.parent / "outcomes.csv").read_text().splitlines()[1:] == rows


@pytest.mark.parametrize("argv, message", [
    (["--scale", "Lung=0.5"], "unknown organ 'Lung'"),
    (["--scale", "Heart=-0.1"], "must be a number >= 0"),
    (["--scale", "Heart0.5"], "expected ORGAN=FACTOR"),
    (["--after", "4"], "--after 4 is beyond the course"),
    (["--after", "1", "--fractions", "1"], "leaves nothing after fraction 1"),
    (["--after", "3", "--fractions", "5"], "no dose remains"),
    (["--patient", "SYN009"], "'SYN009' is not in this synthetic cohort"),
    (["--seed", "3"], "--seed: not for --counterfactual"),
])
def test_bad_scenarios_are_clear_errors(cohort, tmp_path, capsys, argv, message):
    args = {"--patient": "SYN001", "--after": "1"}
    rest = []
    for i in range(0, len(argv), 2):
        if argv[i] in args:
            args[argv[i]] = argv[i + 1]
        else:
            rest += argv[i:i + 2]
    out = tmp_path / "x"
    full = ["synth", str(out), "--counterfactual", str(cohort), *[x for kv in args.items() for x in kv], *rest]
    assert main(full) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_counterfactual_options_need_a_cohort(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "x"), "--after", "2", "--scale", "Heart=0.5"]) == 2
    assert "--after, --scale need --counterfactual COHORT" in capsys.readouterr().err
    with pytest.raises(InputError, match="no synth_provenance.json"):
        true_probability(tmp_path, "SYN001", 1)
