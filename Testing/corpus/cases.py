"""Every case of the corpus, in the order they run (see README.md for the outcome table).

A case is a bad (or legitimately unusual) input of one reader or command, built at test time from the
small synthetic cohort and ../shared/data, with its expected outcome: `refused(words...)` (a CompassError,
exit status 2 from a door, whose one-line message holds the words and, for a reader, names the file,
patient and fraction) or `SAME` (a result equal to the clean input's). The modules:
- cases_dicom:    CT, PET, RTDOSE, RTSTRUCT readers (pydicom mutations of real files);
- cases_files:    NRRD / NIfTI / seg.nrrd, cohort.json, outcomes.csv, clinical CSV, model folders, output paths;
- cases_commands: scan, bed, dvh, features, texture, run, update, report, the batch script.
`compass run` runs once (run_three_patients); the model, update, report and batch cases use its output.
"""
from __future__ import annotations

from corpus import cases_commands, cases_dicom, cases_files


def all_cases() -> list:
    files = cases_files
    out = (cases_dicom.cases() + files.image_cases() + files.manifest_cases() + files.outcomes_cases()
           + files.clinical_cases() + cases_commands.cases() + files.model_cases() + files.output_cases())
    names = [c.name for c in out]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    assert not duplicated, f"case names used twice: {duplicated}"
    return out
