"""One source of feature and texture settings: a texture map drawn in the Slicer scene (the module's
Compute texture button ends in mrml.add_texture_maps) equals the map file `compass run --texture-maps`
writes (texture_summary.write_cohort_maps, with the run's FeatureSettings) and the tex_ columns of the
feature table, for the same organ and fraction."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

import slicer  # noqa: F401  (slicer-core: a pinned test dependency)

ORGAN, FRACTION = "Heart", 2


@pytest.fixture(scope="module")
def three_ways(small_cohort, tmp_path_factory):
    from COMPASSLib import mrml
    from COMPASSLib.cohort import Cohort
    from COMPASSLib.features.settings import FeatureSettings
    from COMPASSLib.features.table import extract_cohort
    from COMPASSLib.features.texture_summary import map_settings, write_cohort_maps
    from COMPASSLib.pipeline import feature_settings, resolve_settings

    cohort = Cohort.load(small_cohort)
    pid = cohort.patient_ids[0]
    one = cohort.subset([pid])
    run_fs = feature_settings(resolve_settings({}))          # what `compass run` uses by default
    out = tmp_path_factory.mktemp("run_maps")
    records = write_cohort_maps(one, out, run_fs, [ORGAN], fractions=[FRACTION])
    # the tex_ columns with the run's texture settings (fast profile otherwise, to keep the test short)
    table = extract_cohort(one, FeatureSettings(profile="fast", organs=[ORGAN], texture=run_fs.texture))
    scene = mrml.new_scene()
    try:
        nodes = mrml.load_patient(one, pid, scene)
        overlays = mrml.add_texture_maps(nodes, ORGAN, FRACTION, scene=scene)
        scene_maps = {n.GetAttribute("COMPASS.feature"): slicer.util.arrayFromVolume(n).copy() for n in overlays}
        bin_widths = {float(n.GetAttribute("COMPASS.bin_width_gy")) for n in overlays}
    finally:
        mrml.release_scene(scene)
    return {"records": records, "out": out, "table": table, "scene": scene_maps, "bin_widths": bin_widths,
            "tex": map_settings(run_fs), "pid": pid}


def test_scene_map_uses_the_runs_settings(three_ways):
    assert three_ways["bin_widths"] == {three_ways["tex"]["bin_width_gy"]}
    assert sorted(three_ways["scene"]) == sorted(three_ways["tex"]["features"])


def test_scene_map_equals_the_runs_map_file(three_ways):
    files = {r["feature"]: three_ways["out"] / r["path"] for r in three_ways["records"]
             if r["organ"] == ORGAN and r["fraction"] == FRACTION}
    assert files, "compass run wrote no map for the organ and fraction"
    for key, arr in three_ways["scene"].items():
        written = sitk.GetArrayFromImage(sitk.ReadImage(str(files[key])))
        # the overlay shows NaN (kernels without GLCM pairs) as 0, as the texture colour table's transparent 0
        np.testing.assert_array_equal(arr, np.nan_to_num(written, nan=0.0).astype(arr.dtype), err_msg=key)


def test_scene_map_summaries_equal_the_tex_columns(three_ways, small_cohort):
    from COMPASSLib.ingest import load_fraction

    table = three_ways["table"]
    row = table[(table.organ == ORGAN) & (table.fraction == FRACTION)].iloc[0]
    mask = sitk.GetArrayFromImage(load_fraction(small_cohort, three_ways["pid"], FRACTION).masks[ORGAN]) > 0
    files = {r["feature"]: three_ways["out"] / r["path"] for r in three_ways["records"]
             if r["organ"] == ORGAN and r["fraction"] == FRACTION}
    for key in three_ways["scene"]:
        written = sitk.GetArrayFromImage(sitk.ReadImage(str(files[key]))).astype(np.float64)
        inside = written[mask]
        inside = inside[np.isfinite(inside)]
        column = f"tex_{key.replace(':', '_')}"
        assert row[f"{column}_mean"] == pytest.approx(inside.mean(), rel=1e-6), key
        for q in three_ways["tex"]["percentiles"]:
            assert row[f"{column}_p{q:g}"] == pytest.approx(np.percentile(inside, q), rel=1e-6), (key, q)
