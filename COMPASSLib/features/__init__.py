"""Per-organ, per-fraction features (docs/features.md).

    table.extract_cohort(cohort, settings, workers=1, scheduler=None, cache_dir=None) -> DataFrame
    settings.FeatureSettings          profiles "full" / "fast", YAML/JSON
    kinetics   bed_/dvh_ from voxelwise BED/EQD2      radiomics  pyradiomics wrapper (dose_/ct_/pet_)
    pet        SUVmean/SUVmax/SUVpeak                 clinical   clin_* join
    texture_maps  voxelwise texture maps (torch)

Submodules are imported on use, so importing the package stays light.
"""
