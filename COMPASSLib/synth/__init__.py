"""The synthetic thorax cohort: real DICOM (CT, FDG-PET, RTDOSE, RTSTRUCT per fraction) from a seeded
phantom generator, with outcomes drawn from a hidden toxicity model (see docs/synthetic_cohort.md).

    generate_cohort(out_dir, patients=8, fractions=5, seed=0, size="full") -> Path of cohort.json
    draw_truth(patients=40, fractions=5, seed=0, size="small") -> hidden truth rows, no files written
    counterfactual.true_probability / resimulate_patient -> the same patient under a changed rest of course
"""
from COMPASSLib.synth.cohort import draw_truth, generate_cohort

__all__ = ["generate_cohort", "draw_truth"]
