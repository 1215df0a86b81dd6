"""The BED every door shows, against the published formula evaluated by hand.

BED after n fractions = sum_k d_k (1 + d_k / (alpha/beta)) (Fowler 1989), with the organ's alpha/beta
from Resources/organs.yaml (Heart 3, Esophagus 10 Gy; BODY 3 Gy for tissue outside every organ).
A hand-made cohort (NRRD CT and doses, a Slicer .seg.nrrd with overlapping layers) holds a heart and an
esophagus that share voxels, inside a body outline. The expected values below are plain arithmetic on
the dose values written to the files: no COMPASSLib function computes them.

Checked: the Slicer scene's cumulative BED and EQD2 volumes (mrml.load_patient, on the real slicer-core
MRML), the feature table's bed_mean_gy (features.table.extract_cohort), and `compass bed` (scalar
alpha/beta, and the organ map with --structures), voxel by voxel: inside each organ alone, inside the
two overlapping organs, in body-only tissue, and outside the body.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

SHAPE = (6, 8, 10)           # z, y, x
SPACING = (2.0, 2.0, 3.0)    # x, y, z mm
AB = {"Heart": 3.0, "Esophagus": 10.0, "BODY": 3.0}
# voxels (z, y, x) of each kind
ESO_ONLY, HEART_ONLY, OVERLAP, BODY_ONLY, OUTSIDE = (2, 2, 2), (3, 5, 6), (3, 3, 4), (1, 6, 8), (0, 0, 0)


def _masks():
    heart = np.zeros(SHAPE, np.uint8)
    heart[2:5, 3:7, 4:8] = 1
    eso = np.zeros(SHAPE, np.uint8)
    eso[1:5, 2:4, 2:5] = 1          # shares [2:5, 3:4, 4:5] with the heart
    body = np.zeros(SHAPE, np.uint8)
    body[1:6, 1:8, 1:10] = 1
    return {"Heart": heart, "Esophagus": eso, "BODY": body}


def _doses():
    """Two fraction doses with a different value in every voxel (1.5 .. 4.5 Gy and 2.0 .. 6.0 Gy)."""
    ramp = np.linspace(0.0, 1.0, int(np.prod(SHAPE))).reshape(SHAPE)
    return [(1.5 + 3.0 * ramp).astype(np.float32), (6.0 - 4.0 * ramp).astype(np.float32)]


def _hand_bed(voxel, ab: float) -> float:
    total = 0.0
    for dose in _doses():
        d = float(dose[voxel])                      # the float32 value written to the file
        total += d * (1.0 + d / ab)
    return total


def _image(array):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING)
    image.SetOrigin((-10.0, -8.0, 4.0))
    return image


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bed_cohort")
    ct = np.full(SHAPE, -1000.0, np.float32)
    ct[_masks()["BODY"] > 0] = 40.0
    sitk.WriteImage(_image(ct), str(root / "ct.nrrd"))
    # a Slicer segmentation: one layer per segment (they overlap), named in the header as Slicer writes it
    masks = _masks()
    seg = sitk.GetImageFromArray(np.stack([masks[n] for n in masks], axis=-1), isVector=True)
    seg.SetSpacing(SPACING)
    seg.SetOrigin((-10.0, -8.0, 4.0))
    for i, name in enumerate(masks):
        seg.SetMetaData(f"Segment{i}_Name", name)
        seg.SetMetaData(f"Segment{i}_ID", name)
        seg.SetMetaData(f"Segment{i}_LabelValue", "1")
        seg.SetMetaData(f"Segment{i}_Layer", str(i))
    sitk.WriteImage(seg, str(root / "organs.seg.nrrd"))
    fractions = []
    for k, dose in enumerate(_doses(), start=1):
        sitk.WriteImage(_image(dose), str(root / f"dose{k}.nrrd"))
        fractions.append({"index": k, "ct": ["ct.nrrd"], "dose": [f"dose{k}.nrrd"], "rtstruct": ["organs.seg.nrrd"]})
    (root / "outcomes.csv").write_text("patient,organ,grade,onset_fraction\nP1,Heart,0,\nP1,Esophagus,1,2\n")
    (root / "cohort.json").write_text(json.dumps({"patients": [{"id": "P1", "fractions": fractions}]}))
    return root / "cohort.json"


def test_fixture_has_every_kind_of_voxel():
    m = _masks()
    assert m["Esophagus"][ESO_ONLY] and not m["Heart"][ESO_ONLY]
    assert m["Heart"][HEART_ONLY] and not m["Esophagus"][HEART_ONLY]
    assert m["Heart"][OVERLAP] and m["Esophagus"][OVERLAP]
    assert m["BODY"][BODY_ONLY] and not (m["Heart"][BODY_ONLY] or m["Esophagus"][BODY_ONLY])
    assert not m["BODY"][OUTSIDE]


def test_scene_bed_and_eqd2_use_each_organs_own_alpha_beta(cohort):
    import slicer  # noqa: F401  (slicer-core: a pinned test dependency)

    from COMPASSLib import mrml

    scene = mrml.new_scene()
    try:
        nodes = mrml.load_patient(cohort, "P1", scene)
        bed = slicer.util.arrayFromVolume(nodes.node(scene, "bed", 2)).copy()
        eqd2 = slicer.util.arrayFromVolume(nodes.node(scene, "eqd2", 2)).copy()
    finally:
        mrml.release_scene(scene)
    # the organ's own alpha/beta wins over the body outline that contains it
    expected = {ESO_ONLY: AB["Esophagus"], HEART_ONLY: AB["Heart"], BODY_ONLY: AB["BODY"], OUTSIDE: AB["BODY"],
                # two organs: the smaller alpha/beta (the cautious BED for doses above 2 Gy), docs/ARCHITECTURE.md
                OVERLAP: min(AB["Heart"], AB["Esophagus"])}
    for voxel, ab in expected.items():
        assert bed[voxel] == pytest.approx(_hand_bed(voxel, ab), rel=1e-6), voxel
        assert eqd2[voxel] == pytest.approx(_hand_bed(voxel, ab) / (1 + 2 / ab), rel=1e-6), voxel
    # the esophagus voxels away from the heart: the BED of alpha/beta 10, not the body's 3
    assert bed[ESO_ONLY] < _hand_bed(ESO_ONLY, 3.0) - 1.0


def test_feature_table_bed_uses_the_organs_alpha_beta_in_all_its_voxels(cohort):
    from COMPASSLib.features.settings import FeatureSettings
    from COMPASSLib.features.table import extract_cohort

    table = extract_cohort(cohort, FeatureSettings(profile="fast", organs=["Heart", "Esophagus"]))
    masks = _masks()
    for organ in ("Heart", "Esophagus"):
        voxels = list(zip(*np.nonzero(masks[organ])))
        for k in (1, 2):
            hand = np.mean([sum(float(d[v]) * (1 + float(d[v]) / AB[organ]) for d in _doses()[:k]) for v in voxels])
            row = table[(table.organ == organ) & (table.fraction == k)]
            assert float(row["bed_mean_gy"].iloc[0]) == pytest.approx(hand, rel=1e-6), (organ, k)


def test_compass_bed_scalar_and_organ_map(cohort, tmp_path):
    from COMPASSLib.cli import main

    root = cohort.parent
    doses = [str(root / "dose1.nrrd"), str(root / "dose2.nrrd")]
    assert main(["bed", *doses, "--alpha-beta", "10", "-o", str(tmp_path / "bed10.nrrd")]) == 0
    bed10 = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "bed10.nrrd")))
    for voxel in (ESO_ONLY, OVERLAP, HEART_ONLY, BODY_ONLY):
        assert bed10[voxel] == pytest.approx(_hand_bed(voxel, 10.0), rel=1e-6)
    # the organ map from the structures, as the scene has it
    assert main(["bed", *doses, "--structures", str(root / "organs.seg.nrrd"), "-o", str(tmp_path / "map.nrrd")]) == 0
    bed = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "map.nrrd")))
    for voxel, ab in {ESO_ONLY: 10.0, HEART_ONLY: 3.0, OVERLAP: 3.0, BODY_ONLY: 3.0, OUTSIDE: 3.0}.items():
        assert bed[voxel] == pytest.approx(_hand_bed(voxel, ab), rel=1e-6), voxel
    # --alpha-beta with --structures: the tissue outside every organ
    assert main(["bed", *doses, "--structures", str(root / "organs.seg.nrrd"), "--alpha-beta", "5", "--eqd2",
                 "-o", str(tmp_path / "eqd2.nrrd")]) == 0
    eqd2 = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "eqd2.nrrd")))
    assert eqd2[OUTSIDE] == pytest.approx(_hand_bed(OUTSIDE, 5.0) / (1 + 2 / 5.0), rel=1e-6)
    assert eqd2[BODY_ONLY] == pytest.approx(_hand_bed(BODY_ONLY, 5.0) / (1 + 2 / 5.0), rel=1e-6)
    assert eqd2[ESO_ONLY] == pytest.approx(_hand_bed(ESO_ONLY, 10.0) / (1 + 2 / 10.0), rel=1e-6)
    prov = json.loads((tmp_path / "eqd2.nrrd.provenance.json").read_text())
    assert prov["settings"]["alpha_beta_gy"] == "organ map" and prov["settings"]["background_alpha_beta_gy"] == 5.0


def test_synthetic_generators_independent_bed_equals_the_librarys():
    """The synthetic cohort's hidden model keeps its own BED code (it is the ground truth); it must agree
    with the one the pipeline uses."""
    from COMPASSLib import dose
    from COMPASSLib.synth import toxicity

    doses = [d.astype(np.float64) for d in _doses()]
    for ab in (2.0, 3.0, 10.0):
        hidden = toxicity.cumulative_bed(doses, ab)
        library = dose.cumulative_bed(doses, ab)
        for h, lib in zip(hidden, library):
            np.testing.assert_allclose(h, lib, rtol=1e-12, atol=0)
