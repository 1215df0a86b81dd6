"""tex_ columns of the feature table (summaries of voxelwise BED texture maps) on one patient of the small
synthetic cohort (real DICOM): equal to summarise_map of texture_maps run directly on the exported
cumulative BED map and mask (texture_maps itself is tested equal to pyradiomics in test_texture_maps.py);
settings defaults, validation and the cache key."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from COMPASSLib.cohort import Cohort
from COMPASSLib.errors import CompassError
from COMPASSLib.features.settings import FeatureSettings
from COMPASSLib.features.cache import settings_json as _settings_json
from COMPASSLib.features.table import extract_cohort
from COMPASSLib.features.texture_maps import summarise_map, texture_maps
from COMPASSLib.features.texture_summary import column_names, write_cohort_maps
from COMPASSLib.pipeline import write_subset

TEX = {"features": ["glcm:Contrast", "firstorder:Entropy"], "percentiles": [50, 90]}


def _direct_bed_map(cohort, patient, k, organ, alpha_beta, tmp_path):
    """Cumulative BED after fraction k (LQ per fraction, summed) and the organ mask, written to NRRD."""
    from COMPASSLib.ingest import load_fraction

    bed = None
    for j in range(1, k + 1):
        fi = load_fraction(cohort, patient, j)
        d = sitk.GetArrayFromImage(fi.dose).astype(np.float64)
        bed = d * (1 + d / alpha_beta) + (0 if bed is None else bed)
    img = sitk.GetImageFromArray(bed.astype(np.float32))
    img.CopyInformation(fi.dose)
    sitk.WriteImage(img, str(tmp_path / "bed.nrrd"))
    sitk.WriteImage(fi.masks[organ], str(tmp_path / "mask.nrrd"))
    return sitk.ReadImage(str(tmp_path / "bed.nrrd")), sitk.ReadImage(str(tmp_path / "mask.nrrd"))


def test_tex_columns_equal_texture_maps_on_exported_bed_map(small_cohort, tmp_path):
    pid = Cohort.load(small_cohort).patient_ids[0]
    one = write_subset(small_cohort, tmp_path / "one", fractions=2, patients=[pid])
    settings = FeatureSettings(radiomics={}, shape=False, organs=["Heart"], texture=TEX)
    table = extract_cohort(one, settings)
    tex = settings.texture_params()
    assert tex["bin_width_gy"] == 2.0 and tex["radius"] == 1          # the dosiomics file's bin width
    assert [c for c in table.columns if c.startswith("tex_")] == column_names(tex)
    assert "tex_glcm_Contrast_p90" in table.columns
    row = table[table.fraction == 2].iloc[0]
    bed, mask = _direct_bed_map(Cohort.load(one), pid, 2, "Heart", 3.0, tmp_path)
    maps = texture_maps(bed, mask, TEX["features"], radius=1, bin_width=2.0)
    for key, m in maps.items():
        summary = summarise_map(m, mask, percentiles=[50, 90])
        for stat in ("mean", "p50", "p90"):
            assert np.isfinite(summary[stat])
            assert row[f"tex_{key.replace(':', '_')}_{stat}"] == pytest.approx(summary[stat], rel=1e-6, abs=1e-9)
    assert row["tex_glcm_Contrast_p90"] > 0      # a dose gradient crosses the heart: local contrast exists

    # the map files of `compass run --texture-maps` hold the same numbers (organs per patient, chosen fractions)
    records = write_cohort_maps(one, tmp_path / "out", settings, {pid: ["Heart"], "nobody": ["Lungs"]}, [2])
    assert [(r["organ"], r["fraction"], r["feature"]) for r in records] == [("Heart", 2, k) for k in TEX["features"]]
    written = sitk.ReadImage(str(tmp_path / "out" / records[0]["path"]))
    assert records[0]["path"].endswith(f"{pid}/fx2/Heart_glcm_Contrast.nrrd")
    assert summarise_map(written, mask, [90])["p90"] == pytest.approx(row["tex_glcm_Contrast_p90"], rel=1e-6)


def test_texture_settings_profiles_validation_and_cache_key():
    assert FeatureSettings(profile="fast").texture is False and FeatureSettings(profile="fast").texture_params() is None
    full = FeatureSettings()
    assert full.texture["features"] == ["glcm:Contrast", "glcm:JointEntropy", "firstorder:Entropy"]
    assert full.texture["percentiles"] == [50, 90] and full.texture["organs"] is None
    assert FeatureSettings.from_dict(full.resolved()) == full                      # the sidecar reads back
    assert _settings_json(FeatureSettings(texture={"radius": 2})) != _settings_json(full)   # part of the key
    for bad in ({"radius": 0}, {"features": ["glcm:Nope"]}, {"percentiles": [120]}, {"colour": 1},
                {"bin_width_gy": -1}):
        with pytest.raises(CompassError):
            FeatureSettings(texture=bad)
