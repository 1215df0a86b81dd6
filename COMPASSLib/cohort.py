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

Checked when read (InputError naming the file and the entry; docs/input_checks.md):
- cohort.json: every patient id once; per patient every fraction index once (a whole number), no
  fraction entry that repeats another one's files, datetime and fraction_number (a copied entry,
  even renumbered, would count its dose twice in the cumulative BED), and no dose file twice in one
  fraction. A dose file shared by fractions that differ otherwise (the planned fraction dose listed
  for every session, without dose reconstruction) is legitimate and logged as a warning; CT, PET and
  structure files may serve several fractions (nothing is summed over them).
- outcomes.csv: grade a whole number 0-5 (CTCAE), onset_fraction a whole number >= 0 or empty, one row
  per patient and organ (conflicting or repeated rows are refused, naming both lines), and with
  `Cohort.outcomes(check=True)` (the default) every row's patient in the cohort (a typo would silently
  drop that patient's outcome): the error names the unknown id and the closest known one. A cohort
  made by `subset` knows the patients of the cohort it came from; an outcomes file outside the
  cohort's folder (shared by several manifests, as `pipeline.write_subset` and the Slicer scene
  cohort write them) describes a larger cohort, so rows of other patients are expected there and
  are not checked.
"""
from __future__ import annotations

import csv
import difflib
import io
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from COMPASSLib.errors import InputError

MODALITIES = ("ct", "pet", "dose", "rtstruct")
FORMAT_VERSION = 1

log = logging.getLogger(__name__)


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

    def __init__(self, patients=None, root=".", outcomes_file="outcomes.csv", extra=None, known_patients=None):
        self.patients: list[Patient] = list(patients or [])
        self.root = Path(root).resolve()
        self.outcomes_file = outcomes_file
        self.extra = dict(extra or {})   # keys we do not interpret are kept on save
        # patient ids outcomes.csv may name besides ours: those of the cohort a `subset` was made from
        self.known_patients = list(known_patients or [])

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

    def outcomes(self, check: bool = True) -> list:
        """The rows of outcomes.csv ([] when there is none). Always checked: grades, onsets, one row per
        patient and organ (`read_outcomes`). With `check` (the default; training and evaluation need it)
        also that every row names a patient of this cohort (see the module doc for subsets and shared
        outcome files); check=False returns rows of any patient (e.g. one patient's risk chart)."""
        p = self.path(self.outcomes_file)
        if not p.is_file():
            return []
        rows = _read_outcome_rows(p)
        if check:
            self._check_outcome_patients(p, rows)
            self._check_outcome_organs(p, rows)
        return [o for _, o in rows]

    def _check_outcome_organs(self, path, rows) -> None:
        """Every row names an organ the pipeline scores by that name: a canonical organ of Resources/organs.yaml
        or one the manifest's `organs` maps ROI names to. A typo ('Hearts') or a synonym ('Spinal Cord') used to
        make an organ without features and leave the real organ without its outcome."""
        from COMPASSLib.resources import canonical_organ, organ_table

        known = set(organ_table()) | {o for p in self.patients for o in p.organs.values() if o}
        for line, o in rows:
            if o.organ in known:
                continue
            canonical = canonical_organ(o.organ)
            hint = (f"write the canonical name {canonical!r}" if canonical and canonical in known
                    else f"closest known organ: {_closest(o.organ, sorted(known))!r}")
            raise InputError(f"outcomes CSV line {line}: organ {o.organ!r} (patient {o.patient!r}) is no organ of the "
                             f"manifest's 'organs' maps or of Resources/organs.yaml; {hint}", file=path,
                             patient=o.patient)

    def _outcomes_are_shared(self, path) -> bool:
        """An outcomes file outside the cohort's folder is shared with other manifests (write_subset,
        the Slicer scene cohort) and may name patients this manifest leaves out."""
        try:
            Path(path).resolve().relative_to(self.root)
            return False
        except ValueError:
            return True

    def _check_outcome_patients(self, path, rows) -> None:
        known = list(dict.fromkeys(self.patient_ids + self.known_patients))
        unknown = [(line, o) for line, o in rows if o.patient not in known]
        if not unknown:
            return
        if self._outcomes_are_shared(path):
            log.debug("outcomes %s (shared, outside %s): %d row(s) of patients not in this manifest",
                      path, self.root, len(unknown))
            return
        line, o = unknown[0]
        others = sorted({u.patient for _, u in unknown} - {o.patient})
        raise InputError(f"outcomes CSV line {line}: patient {o.patient!r} (organ {o.organ}) is not in the cohort; "
                         f"closest known id: {_closest(o.patient, known)!r}"
                         + (f" (other unknown ids: {', '.join(others[:10])})" if others else ""),
                         file=path, patient=o.patient)

    # --- persistence ------------------------------------------------------------------------
    def subset(self, patient_ids) -> "Cohort":
        """The same cohort (root, outcomes) with only these patients, in the order given. Its outcomes
        may still name the other patients of this cohort (scoring one patient of a study)."""
        return Cohort([self.patient(p) for p in patient_ids], root=self.root, outcomes_file=self.outcomes_file,
                      extra=self.extra, known_patients=self.patient_ids + self.known_patients)

    def onsets(self, patient_id: str) -> dict:
        """organ -> onset fraction of the patient's toxic organs (outcomes.csv), for risk charts."""
        return {o.organ: o.onset_fraction for o in self.outcomes(check=False)
                if o.patient == patient_id and o.toxic}

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
        _check_header(d, source)
        patients = [_patient_entry(i, pd_, source) for i, pd_ in enumerate(d["patients"])]
        check_manifest(patients, root, source)
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


def _check_header(d: dict, source) -> None:
    """format_version a whole number this COMPASS reads, `patients` a list, `outcomes` a file name."""
    version = d.get("format_version", 1)
    if isinstance(version, bool) or not isinstance(version, int):
        raise InputError(f"manifest format_version {version!r} is not a whole number", file=source)
    if version > FORMAT_VERSION:
        raise InputError(f"manifest format_version {version} is newer than this COMPASS understands "
                         f"({FORMAT_VERSION})", file=source)
    if not isinstance(d["patients"], list):
        raise InputError(f"manifest 'patients' must be a list of patient entries, not a {type(d['patients']).__name__}",
                         file=source)
    if not isinstance(d.get("outcomes", "outcomes.csv"), str):
        raise InputError(f"manifest 'outcomes' must be a file name, not {d['outcomes']!r}", file=source)


def _patient_entry(i, pd_, source) -> Patient:
    """Patient of manifest patient entry i; InputError naming the entry when it is malformed."""
    if not isinstance(pd_, dict):
        raise InputError(f"manifest patient entry {i} is malformed: a {type(pd_).__name__} ({str(pd_)[:40]!r}), "
                         "not an object with id and fractions", file=source)
    organs = pd_.get("organs", {})
    if not isinstance(organs, dict):
        raise InputError(f"manifest patient entry {i} ({pd_.get('id')!r}): 'organs' must map ROI names to organs, "
                         f"not a {type(organs).__name__}", file=source, patient=pd_.get("id"))
    try:
        fr = [Fraction(**f) for f in pd_.get("fractions", [])]
        planning = Fraction(**pd_["planning"]) if pd_.get("planning") else None
        return Patient(id=str(pd_["id"]), fractions=sorted(fr, key=lambda f: f.index), planning=planning,
                       organs=dict(organs), frame_of_reference_uid=pd_.get("frame_of_reference_uid"),
                       weight_kg=pd_.get("weight_kg"))
    except KeyError as e:
        raise InputError(f"manifest patient entry {i} is malformed: no {e}", file=source) from None
    except TypeError as e:
        raise InputError(f"manifest patient entry {i} is malformed: {e}", file=source) from None


def _check_file_lists(f, p, source) -> None:
    """Each modality of a fraction (or of the planning entry) is a list of file names."""
    for m in MODALITIES:
        files = getattr(f, m)
        if not isinstance(files, list) or not all(isinstance(x, str) and x for x in files):
            what = "a list of file names" if isinstance(files, list) else f"a list of file names, not a " \
                                                                          f"{type(files).__name__}"
            raise InputError(f"manifest patient {p.id!r} {'planning' if f is p.planning else f'fraction {f.index}'}: "
                             f"'{m}' must be {what} (text, in a list; got {str(files)[:60]!r})", file=source,
                             patient=p.id, fraction=None if f is p.planning else f.index)


def check_manifest(patients, root=".", source=None) -> None:
    """Each patient id once; per patient each fraction index once (a whole number), no fraction entry that
    repeats another (same files of every modality, datetime and fraction_number) and no dose file twice in
    one fraction. InputError naming the manifest, the patient and the index. A dose file shared by
    otherwise different fractions is logged as a warning."""

    def norm(name):
        return os.path.normcase(os.path.normpath(os.path.join(str(root), str(name))))

    first_entry = {}
    for i, p in enumerate(patients):
        if p.id in first_entry:
            raise InputError(f"manifest lists patient {p.id!r} twice (patient entries {first_entry[p.id]} and {i}); "
                             "every patient once, with all its fractions", file=source, patient=p.id)
        first_entry[p.id] = i
        seen_index = set()
        owner = {}     # normalised dose file path -> fraction indices listing it
        entries = {}   # (files of every modality, datetime, fraction_number) -> fraction index
        for f in p.fractions + ([p.planning] if p.planning is not None else []):
            _check_file_lists(f, p, source)
        for f in p.fractions:
            if isinstance(f.index, bool) or not isinstance(f.index, int):
                raise InputError(f"fraction index {f.index!r} is not a whole number", file=source, patient=p.id)
            if f.index in seen_index:
                raise InputError(f"manifest lists fraction index {f.index} twice for patient {p.id!r}; a fraction "
                                 "listed twice would count its dose twice in the cumulative BED",
                                 file=source, patient=p.id, fraction=f.index)
            seen_index.add(f.index)
            files = tuple(tuple(sorted(norm(n) for n in f.files(m))) for m in MODALITIES)
            entry = (files, f.datetime, f.fraction_number)
            if any(files) and entry in entries:
                raise InputError(f"fraction {f.index} of patient {p.id!r} repeats fraction {entries[entry]} (the same "
                                 "files, datetime and fraction_number): a fraction listed twice would count its dose "
                                 "twice in the cumulative BED", file=source, patient=p.id, fraction=f.index)
            entries.setdefault(entry, f.index)
            doses = [norm(n) for n in f.files("dose")]
            for name, key in zip(f.files("dose"), doses):
                if doses.count(key) > 1:
                    raise InputError(f"dose file {name} is listed twice in fraction {f.index} of patient {p.id!r}: "
                                     "it would count twice in the fraction's dose", file=source, patient=p.id,
                                     fraction=f.index)
                owner.setdefault(key, []).append(f.index)
        for key, indices in owner.items():
            if len(indices) > 1:
                log.warning("manifest %s: patient %s fractions %s list the same dose file %s; each counts in the "
                            "cumulative BED (right for a planned fraction dose delivered in every session, wrong "
                            "for a copied entry)", source, p.id, indices, key)


def _closest(name: str, known) -> str | None:
    """The known id most like `name` (difflib ratio), also when none is close."""
    known = list(known)
    if not known:
        return None
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.0)
    return close[0] if close else known[0]


def _whole_number(text: str, what: str):
    """int of a CSV cell holding a whole number ('2', '2.0'); ValueError with the reason otherwise."""
    value = float(text)
    if not math.isfinite(value) or value != int(value):
        raise ValueError(f"{what} {text.strip()!r} is not a whole number")
    return int(value)


def _read_outcome_rows(path) -> list:
    """[(line, Outcome)] of outcomes.csv, checked (see read_outcomes). UTF-8, with or without the byte-order
    mark spreadsheet programs write; column names may carry spaces."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"outcomes CSV is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8 CSV",
                         file=path) from None
    return _outcome_rows(path, io.StringIO(text, newline=""))


def _outcome_rows(path, f) -> list:
    """[(line, Outcome)] of the CSV text in `f` (see read_outcomes)."""
    out = []
    seen = {}   # (patient, organ) -> (line, Outcome)
    reader = csv.DictReader(f)
    reader.fieldnames = [name.strip() for name in reader.fieldnames or []]
    missing = {"patient", "organ", "grade"} - set(reader.fieldnames)
    if missing:
        raise InputError(f"outcomes CSV lacks column(s) {sorted(missing)}", file=path)
    for line, row in enumerate(reader, start=2):
        patient = (row.get("patient") or "").strip()
        organ = (row.get("organ") or "").strip()
        where = f"outcomes CSV line {line} (patient {patient!r}, organ {organ!r})"
        if not patient or not organ:
            raise InputError(f"{where}: patient and organ must not be empty", file=path,
                             patient=patient or None)
        grade_text = (row.get("grade") or "").strip()
        try:
            grade = _whole_number(grade_text, "grade")
        except ValueError as e:
            why = str(e) if "whole number" in str(e) else f"grade {grade_text!r} is not a number"
            raise InputError(f"{where}: {why}; grade/onset_fraction must be whole numbers "
                             "(CTCAE grade 0-5)", file=path, patient=patient) from None
        if not 0 <= grade <= 5:
            raise InputError(f"{where}: grade {grade} is outside CTCAE 0-5", file=path, patient=patient)
        onset = (row.get("onset_fraction") or "").strip()
        try:
            onset = None if onset in ("", "nan", "NA") else _whole_number(onset, "onset_fraction")
        except ValueError as e:
            why = str(e) if "whole number" in str(e) else f"onset_fraction {onset!r} is not a number"
            raise InputError(f"{where}: {why}; grade/onset_fraction must be whole numbers",
                             file=path, patient=patient) from None
        if onset is not None and onset < 0:
            raise InputError(f"{where}: onset_fraction {onset} must be >= 0", file=path, patient=patient)
        outcome = Outcome(patient, organ, grade, onset)
        if (patient, organ) in seen:
            first, earlier = seen[(patient, organ)]
            how = "repeats" if earlier == outcome else "conflicts with"
            raise InputError(f"outcomes CSV line {line} {how} line {first}: patient {patient!r} organ {organ!r} "
                             f"(grade {earlier.grade} / {grade}); one row per patient and organ",
                             file=path, patient=patient)
        seen[(patient, organ)] = (line, outcome)
        out.append((line, outcome))
    return out


def read_outcomes(path) -> list:
    """Read outcomes.csv (patient, organ, grade, onset_fraction): grade a whole number 0-5 (CTCAE), onset a
    whole number >= 0 or empty, one row per patient and organ; InputError naming the file and line."""
    return [o for _, o in _read_outcome_rows(path)]


def write_outcomes(path, outcomes) -> Path:
    from COMPASSLib.atomic import write_text

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["patient", "organ", "grade", "onset_fraction"])
    for o in outcomes:
        w.writerow([o.patient, o.organ, o.grade, "" if o.onset_fraction is None else o.onset_fraction])
    return write_text(path, buf.getvalue())
