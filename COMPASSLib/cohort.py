"""The cohort manifest: patients, their fractions in delivery order and the files of each modality.

A cohort is a folder with `cohort.json` (written by `compass scan` or `compass synth`, meant to be
read and edited by people) and `outcomes.csv` beside it. Paths inside the manifest are relative to
the manifest's folder, so a cohort folder can be moved or copied as a whole.

cohort.json (format_version 1):
{
  "format_version": 1,
  "outcomes": "outcomes.csv",
  "patients": [
    {"id": "SYN001", "frame_of_reference_uid": "1.2...", "weight_kg": 72.0,
     "organs": {"Spinal Cord": "SpinalCord", "Heart": "Heart", ...},   # ROI name in files -> canonical
     "planning": {"ct": ["SYN001/plan/CT/CT0001.dcm", ...], "rtstruct": ["SYN001/plan/RS.dcm"]},
     "fractions": [
        {"index": 1, "datetime": "2026-01-05T09:00:00", "fraction_number": 1,
         "ct": [...], "pet": [...], "dose": ["SYN001/F1/RD.dcm"], "rtstruct": ["SYN001/F1/RS.dcm"]},
        ...]}]}
A modality is a list of files: a DICOM series (many files) or one NRRD/NIfTI/seg.nrrd file.
Several dose files for one fraction are summed (e.g. one RTDOSE per beam).

outcomes.csv: columns patient, organ, grade (CTCAE 0-5), onset_fraction (empty when no toxicity or
unknown). Toxicity is grade >= 1.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from COMPASSLib.errors import InputError

MODALITIES = ("ct", "pet", "dose", "rtstruct")
FORMAT_VERSION = 1


@dataclass
class Fraction:
    index: int                           # 1-based delivery order (planning scan is separate)
    datetime: str | None = None          # ISO 8601 of the fraction's study/acquisition
    fraction_number: int | None = None   # RT fraction number from the DICOM, where present
    ct: list = field(default_factory=list)
    pet: list = field(default_factory=list)
    dose: list = field(default_factory=list)
    rtstruct: list = field(default_factory=list)

    def files(self, modality: str) -> list:
        return list(getattr(self, modality))


@dataclass
class Patient:
    id: str
    fractions: list = field(default_factory=list)      # list[Fraction], sorted by index
    planning: Fraction | None = None                    # index 0: planning CT and structures
    organs: dict = field(default_factory=dict)          # ROI name as in files -> canonical organ
    frame_of_reference_uid: str | None = None
    weight_kg: float | None = None

    def fraction(self, index: int) -> Fraction:
        for f in self.fractions:
            if f.index == index:
                return f
        raise InputError(f"no fraction {index} (has {[f.index for f in self.fractions]})", patient=self.id)

    @property
    def canonical_organs(self) -> list:
        seen = []
        for c in self.organs.values():
            if c and c not in seen:
                seen.append(c)
        return seen


@dataclass
class Outcome:
    patient: str
    organ: str
    grade: int
    onset_fraction: int | None = None

    @property
    def toxic(self) -> bool:
        return self.grade >= 1


class Cohort:
    """Patients of one study, with paths resolved against the manifest's folder."""

    def __init__(self, patients=None, root=".", outcomes_file="outcomes.csv", extra=None):
        self.patients: list[Patient] = list(patients or [])
        self.root = Path(root).resolve()
        self.outcomes_file = outcomes_file
        self.extra = dict(extra or {})   # keys we do not interpret are kept on save

    # --- access -----------------------------------------------------------------------------
    def patient(self, patient_id: str) -> Patient:
        for p in self.patients:
            if p.id == patient_id:
                return p
        raise InputError(f"patient {patient_id!r} not in cohort", file=self.root / "cohort.json")

    @property
    def patient_ids(self) -> list:
        return [p.id for p in self.patients]

    def path(self, relative) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else self.root / p

    def paths(self, files) -> list:
        return [self.path(f) for f in files]

    def outcomes(self) -> list:
        p = self.path(self.outcomes_file)
        return read_outcomes(p) if p.is_file() else []

    # --- persistence ------------------------------------------------------------------------
    def subset(self, patient_ids) -> "Cohort":
        """The same cohort (root, outcomes) with only these patients, in the order given."""
        return Cohort([self.patient(p) for p in patient_ids], root=self.root, outcomes_file=self.outcomes_file,
                      extra=self.extra)

    def onsets(self, patient_id: str) -> dict:
        """organ -> onset fraction of the patient's toxic organs (outcomes.csv), for risk charts."""
        return {o.organ: o.onset_fraction for o in self.outcomes() if o.patient == patient_id and o.toxic}

    def to_dict(self) -> dict:
        d = {"format_version": FORMAT_VERSION, "outcomes": self.outcomes_file, **self.extra, "patients": []}
        for p in self.patients:
            pd_ = asdict(p)
            pd_["fractions"] = sorted(pd_["fractions"], key=lambda f: f["index"])
            if p.planning is None:
                pd_.pop("planning")
            d["patients"].append(pd_)
        return d

    @classmethod
    def from_dict(cls, d: dict, root=".", source=None) -> "Cohort":
        if not isinstance(d, dict) or "patients" not in d:
            raise InputError("not a COMPASS cohort manifest (no 'patients')", file=source)
        if d.get("format_version", 1) > FORMAT_VERSION:
            raise InputError(f"manifest format_version {d['format_version']} is newer than this COMPASS "
                             f"understands ({FORMAT_VERSION})", file=source)
        patients = []
        for i, pd_ in enumerate(d["patients"]):
            try:
                fr = [Fraction(**f) for f in pd_.get("fractions", [])]
                planning = Fraction(**pd_["planning"]) if pd_.get("planning") else None
                patients.append(Patient(id=str(pd_["id"]), fractions=sorted(fr, key=lambda f: f.index),
                                        planning=planning, organs=dict(pd_.get("organs", {})),
                                        frame_of_reference_uid=pd_.get("frame_of_reference_uid"),
                                        weight_kg=pd_.get("weight_kg")))
            except (KeyError, TypeError) as e:
                raise InputError(f"manifest patient entry {i} is malformed: {e}", file=source) from None
        extra = {k: v for k, v in d.items() if k not in ("format_version", "outcomes", "patients")}
        return cls(patients, root=root, outcomes_file=d.get("outcomes", "outcomes.csv"), extra=extra)

    @classmethod
    def load(cls, path) -> "Cohort":
        """Load `cohort.json` (or a folder holding one)."""
        path = Path(path)
        if path.is_dir():
            path = path / "cohort.json"
        if not path.is_file():
            raise InputError("cohort manifest not found (run `compass scan DIR -o cohort.json` first)", file=path)
        from COMPASSLib.atomic import read_json

        d = read_json(path, "cohort manifest")
        return cls.from_dict(d, root=path.parent, source=path)

    def save(self, path) -> Path:
        from COMPASSLib.atomic import write_json

        path = Path(path)
        if path.is_dir():
            path = path / "cohort.json"
        return write_json(path, self.to_dict())


def read_outcomes(path) -> list:
    """Read outcomes.csv (patient, organ, grade, onset_fraction)."""
    path = Path(path)
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"patient", "organ", "grade"} - set(reader.fieldnames or [])
        if missing:
            raise InputError(f"outcomes CSV lacks column(s) {sorted(missing)}", file=path)
        for line, row in enumerate(reader, start=2):
            try:
                grade = int(float(row["grade"]))
                onset = (row.get("onset_fraction") or "").strip()
                onset = None if onset in ("", "nan", "NA") else int(float(onset))
            except ValueError:
                raise InputError(f"outcomes CSV line {line}: grade/onset_fraction not a number",
                                 file=path, patient=row.get("patient")) from None
            if not 0 <= grade <= 5 or (isinstance(onset, int) and onset < 0) or math.isnan(grade):
                raise InputError(f"outcomes CSV line {line}: grade must be 0-5, onset >= 0",
                                 file=path, patient=row.get("patient"))
            out.append(Outcome(row["patient"].strip(), row["organ"].strip(), grade, onset))
    return out


def write_outcomes(path, outcomes) -> Path:
    import io

    from COMPASSLib.atomic import write_text

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["patient", "organ", "grade", "onset_fraction"])
    for o in outcomes:
        w.writerow([o.patient, o.organ, o.grade, "" if o.onset_fraction is None else o.onset_fraction])
    return write_text(path, buf.getvalue())
