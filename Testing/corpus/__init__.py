"""The generated bad-input corpus (issue 15) and the DICOM header mutator (test helpers).

- `cases`: the case definitions, each a bad (or legitimately unusual) input of one reader or command with
  its expected outcome: a CompassError with key words in its one-line message, or the clean case's result.
- `build`: the workspace the cases are built in (a small synthetic cohort and ../shared/data, copied and
  mutated at test time, nothing committed) and the runner that classifies every outcome.
- `fuzz`: the seeded DICOM header mutator of Testing/test_header_fuzz.py.
See README.md for the outcome table of the last run.
"""
