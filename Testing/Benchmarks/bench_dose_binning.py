"""Does the dose texture's bin width hide the synthetic generator's hot-spot index? For every patient and
organ of a synthetic cohort, pyradiomics (firstorder, glcm, glszm) on the organ's cumulative BED after the
course (physical fraction doses from the cohort's RTDOSE files, the organ's alpha/beta), with each binning;
prints per organ and binning the three features whose values rank the patients most like the hidden
hot-spot index (|Spearman rho|). Reads the generator's ground_truth.json: a benchmark, never the pipeline.

    .venv/bin/compass synth c40 --patients 40 --fractions 5 --seed 0 --size small
    .venv/bin/python Testing/Benchmarks/bench_dose_binning.py c40
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

BINNINGS = {"binWidth 2 Gy (Resources/radiomics/dose.yaml)": {"binWidth": 2.0}, "binCount 16": {"binCount": 16},
            "binCount 32": {"binCount": 32}, "binWidth 0.1 Gy": {"binWidth": 0.1}}
ORGANS = ("SpinalCord", "Heart", "Esophagus")


def main(argv=None) -> int:
    import numpy as np
    import SimpleITK as sitk
    from radiomics import featureextractor
    from scipy.stats import spearmanr

    from COMPASSLib.cohort import Cohort
    from COMPASSLib.ingest import PatientLoader
    from COMPASSLib.resources import alpha_beta

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cohort", help="a synthetic cohort folder (cohort.json, ground_truth.json)")
    args = ap.parse_args(argv)
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    cohort = Cohort.load(args.cohort)
    truth = json.loads((cohort.root / "ground_truth.json").read_text())
    hidden = {(o["patient"], o["organ"]): o["hotspot_index"] for p in truth["patients"] for o in p["organs"]}
    extractors = {}
    for name, binning in BINNINGS.items():
        ex = featureextractor.RadiomicsFeatureExtractor(label=1, minimumROIDimensions=1, minimumROISize=1, **binning)
        ex.disableAllFeatures()
        for cls in ("firstorder", "glcm", "glszm"):
            ex.enableFeatureClassByName(cls)
        extractors[name] = ex
    values = {}                         # (binning, feature) -> {(patient, organ): value}
    for pid in cohort.patient_ids:
        loader = PatientLoader(cohort, pid, modalities=("dose", "rtstruct"), organs=list(ORGANS))
        fractions = [loader.load(f.index) for f in cohort.patient(pid).fractions]
        doses = [sitk.GetArrayFromImage(f.dose).astype(float) for f in fractions]
        for organ in ORGANS:
            ab = alpha_beta(organ)
            bed = sitk.GetImageFromArray(sum(d * (1 + d / ab) for d in doses))
            bed.CopyInformation(fractions[0].dose)
            for name, ex in extractors.items():
                for feature, v in ex.execute(bed, fractions[-1].masks[organ]).items():
                    if feature.startswith("original_"):
                        values.setdefault((name, feature[len("original_"):]), {})[(pid, organ)] = float(v)
    for organ in ORGANS:
        keys = [(p, organ) for p in cohort.patient_ids]
        target = [hidden[k] for k in keys]
        for name in BINNINGS:
            scores = []
            for (b, feature), per in values.items():
                x = [per[k] for k in keys]
                if b == name and np.std(x) > 0:
                    scores.append((abs(float(spearmanr(x, target)[0])), feature))
            best = ", ".join(f"{f} {r:.2f}" for r, f in sorted(scores, reverse=True)[:3])
            print(f"{organ:<11} {name:<45} {best}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
