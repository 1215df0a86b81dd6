"""COMPASSLib: the library behind the COMPASS 3D Slicer extension.

A per-organ "digital twin" of fractionated radiotherapy (after arXiv 2602.18496): per-fraction
CT, PET, delivered dose and contours -> voxelwise BED/EQD2 -> organ feature trajectories ->
GRU autoencoder latent trajectories -> logistic-regression toxicity risk after every fraction.

Pipeline packages, in the order data flows through them:
    cohort      manifest of patients / fractions / files, `scan` of DICOM trees, outcomes
    io          readers (CT, PET->SUV, RTDOSE, RTSTRUCT, NRRD/NIfTI/seg.nrrd) and writers
    geometry    reference grid choice and resampling
    dose, ntcp  BED/EQD2/DVH/gEUD and LKB NTCP baselines
    features    kinetics, pyradiomics wrappers, voxelwise texture maps
    twin        autoencoder + classifier estimator, evaluation, persistence
    pipeline    `run` and `update` orchestration
    report      HTML report
    synth       synthetic thorax cohort
    mrml        the Slicer (MRML) bridge

No Qt and no Slicer are needed to import anything here; `COMPASSLib.mrml` imports `slicer` lazily.
"""

__version__ = "0.1.0"
