"""`compass scan`: walk a DICOM tree and write the cohort manifest (see COMPASSLib.cohort).

Reading: every file under the folder is opened with pydicom (header only); files that are not DICOM
are skipped with a debug log. CT and PT files are grouped into series by SeriesInstanceUID; RTDOSE
and RTSTRUCT files stand alone. Patients are grouped by PatientID.

Grouping rule (per patient), applied in this order:
1. Every item (image series, RTDOSE, RTSTRUCT) gets a time: SeriesDate/SeriesTime, else
   AcquisitionDate/AcquisitionTime, else ContentDate/ContentTime, else StudyDate/StudyTime; and a
   fraction number where the file states one: FractionNumber (3002,0029) or CurrentFractionNumber
   (3008,0022) (the RT fraction numbers of RT image / treatment record objects).
2. Fractions are the delivered-dose sessions: each RTDOSE belongs to the fraction of its fraction
   number, else to the fraction of its calendar day (a fraction is delivered at most once a day).
   Fractions are ordered by fraction number where all have one, else by time, and indexed 1..n.
   Several RTDOSE files of one fraction (e.g. one per beam) are all listed; ingest sums them.
3. Image series and RTSTRUCTs with a fraction number join that fraction; others join the fraction
   delivered on the same calendar day (the one nearest in time when a day has two).
4. Planning: the CT series dated before the first fraction's day (the latest such CT if several),
   and the RTSTRUCT that references that CT series (else the latest RTSTRUCT dated before the first
   fraction). When an RTSTRUCT references a CT series by SeriesInstanceUID, it goes where that series
   went (planning or a fraction), whatever its own date.
5. Anything left (an image on a day without dose) is reported with a warning and not listed.
   Without any RTDOSE the fractions are the days with CT/PET after the planning CT, listed without
   dose: the manifest is still written (it is there to be edited), with one warning per such patient
   naming its sessions, because `compass features`/`run` refuse a fraction without dose and leave the
   patient out (`compass scan --strict` refuses to write the manifest instead; see `missing_doses`).
One modality of one fraction is one series: if several CT (or PET) series share a fraction, the
one with the most slices is used and the others are reported; of several RTSTRUCTs, the one that
references the session's CT series, else the latest.

The manifest maps every ROI name found to a canonical organ (COMPASSLib.resources.canonical_organ;
null where the synonym table has no match, for the user to fill in). Outcomes are not invented: the
manifest names `outcomes.csv`, which the user provides.
"""
from __future__ import annotations

import datetime as _dt
import logging
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from COMPASSLib.cohort import Cohort, Fraction, Patient
from COMPASSLib.errors import InputError

log = logging.getLogger(__name__)

IMAGE_MODALITIES = {"CT": "ct", "PT": "pet"}


@dataclass
class Item:
    """One unit the manifest lists: an image series, an RTDOSE or an RTSTRUCT file."""
    kind: str                       # ct, pet, dose, rtstruct
    files: list
    time: _dt.datetime | None
    fraction_number: int | None = None
    series_uid: str = ""
    frame_of_reference_uid: str = ""
    referenced_series: set = field(default_factory=set)
    roi_names: list = field(default_factory=list)
    weight_kg: float | None = None

    @property
    def day(self):
        return self.time.date() if self.time else None


def _time(ds):
    from COMPASSLib.io.dicom_series import dicom_datetime

    for date, time in (("SeriesDate", "SeriesTime"), ("AcquisitionDate", "AcquisitionTime"),
                       ("ContentDate", "ContentTime"), ("StudyDate", "StudyTime")):
        t = dicom_datetime(ds.get(date), ds.get(time) or "000000")
        if t:
            return t
    return None


def _fraction_number(ds):
    for keyword in ("FractionNumber", "CurrentFractionNumber"):
        value = ds.get(keyword)
        if value not in (None, ""):
            try:
                return int(value)
            except (TypeError, ValueError):
                pass
    return None


def _referenced_series(ds) -> set:
    uids = set()
    for frame in ds.get("ReferencedFrameOfReferenceSequence", []):
        for study in frame.get("RTReferencedStudySequence", []):
            for series in study.get("RTReferencedSeriesSequence", []):
                if series.get("SeriesInstanceUID"):
                    uids.add(str(series.SeriesInstanceUID))
    return uids


def _walk(root):
    """Yield (path, dataset) of every DICOM file under `root` (header only)."""
    from COMPASSLib.io.dicom_series import read_dataset

    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.upper() == "DICOMDIR":
                continue
            try:
                ds = read_dataset(path, stop_before_pixels=True)
            except InputError as e:
                log.debug("skipping %s: not DICOM (%s)", path, e.message)
                continue
            yield path, ds


def _collect(root):
    """PatientID -> list[Item]."""
    from COMPASSLib.io.dicom_series import dicom_datetime
    from COMPASSLib.io.rtstruct import structure_frame_of_reference

    series = {}
    items = defaultdict(list)
    for path, ds in _walk(root):
        patient = str(ds.get("PatientID", "")).strip()
        modality = str(ds.get("Modality", "")).upper()
        if not patient:
            log.warning("skipping %s: DICOM without PatientID", path)
            continue
        weight = ds.get("PatientWeight")
        weight = float(weight) if weight not in (None, "") and float(weight) > 0 else None
        if modality in IMAGE_MODALITIES:
            uid = str(ds.get("SeriesInstanceUID", ""))
            key = (patient, uid)
            if key not in series:
                series[key] = Item(IMAGE_MODALITIES[modality], [], _time(ds), _fraction_number(ds), uid,
                                   str(ds.get("FrameOfReferenceUID", "")), weight_kg=weight)
                items[patient].append(series[key])
            series[key].files.append(path)
            t = _time(ds)
            if t and (series[key].time is None or t < series[key].time):
                series[key].time = t
        elif modality == "RTDOSE":
            items[patient].append(Item("dose", [path], _time(ds), _fraction_number(ds),
                                       frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", ""))))
        elif modality == "RTSTRUCT":
            names = [str(r.get("ROIName", "")).strip() for r in ds.get("StructureSetROISequence", [])]
            t = _time(ds) or dicom_datetime(ds.get("StructureSetDate"), ds.get("StructureSetTime") or "000000")
            items[patient].append(Item("rtstruct", [path], t, _fraction_number(ds),
                                       frame_of_reference_uid=structure_frame_of_reference(ds),
                                       referenced_series=_referenced_series(ds), roi_names=names))
        else:
            log.debug("skipping %s: modality %s not used by COMPASS", path, modality or "(none)")
    return items


def _order_files(item):
    """Image series files in slice order would need pixel headers; the manifest keeps a stable
    name order (readers sort by position themselves)."""
    return sorted(item.files)


def _dose_sessions(doses, numbered) -> dict:
    """Rule 2: the fraction sessions the doses make, key -> list of items; the key is
    ("n", fraction number) when every dose has one, else ("d", calendar day)."""
    sessions = {}
    for d in doses:
        key = ("n", d.fraction_number) if numbered else ("d", d.day)
        sessions.setdefault(key, []).append(d)
    return sessions


def _planning_ct(items, first_day):
    """Rule 4: the latest CT series dated before the first fraction's day (without doses: the
    earliest dated CT), or None."""
    cts = [i for i in items if i.kind == "ct"]
    if first_day is not None:
        before = [c for c in cts if c.day and c.day < first_day]
    else:
        dated = sorted((c for c in cts if c.time), key=lambda c: c.time)
        before = dated[:1]
    return max(before, key=lambda c: c.time) if before else None


def _add_imaging_days(sessions, items, planning_ct):
    """Without any RTDOSE: one (empty) session per day with CT/PET other than the planning CT."""
    for i in items:
        if i.kind in ("ct", "pet") and i is not planning_ct and i.day:
            sessions.setdefault(("d", i.day), [])


def _nearest_session(sessions):
    """item -> key of the session it joins by date, or None (function built on the sessions as they
    stand now, i.e. from the doses alone)."""
    # calendar day -> [(session time, key)]: an unnumbered item joins the session of its day that is
    # nearest in time (two fractions on one day, e.g. twice-daily treatment, stay apart)
    sessions_of_day = defaultdict(list)
    for key, members in sessions.items():
        times = [m.time for m in members if m.time]
        if times:
            sessions_of_day[min(times).date()].append((min(times), key))
        elif key[0] == "d" and key[1] is not None:
            sessions_of_day[key[1]].append((_dt.datetime.combine(key[1], _dt.time(12)), key))

    def session_of(item):
        candidates = sessions_of_day.get(item.day)
        if not candidates:
            return None
        return min(candidates, key=lambda c: abs((c[0] - item.time).total_seconds()))[1]

    return session_of


def _attach_images(items, sessions, numbered, planning_ct, session_of):
    """Rule 3 for CT/PET series: add each to its session (in time order). Returns (where: series uid ->
    "planning" | session key, leftovers)."""
    where = {}
    if planning_ct is not None:
        where[planning_ct.series_uid] = "planning"
    leftovers = []
    for i in sorted((i for i in items if i.kind in ("ct", "pet")), key=lambda i: (i.time is None, i.time)):
        if i is planning_ct:
            continue
        key = ("n", i.fraction_number) if numbered and i.fraction_number is not None else session_of(i)
        if key in sessions:
            sessions[key].append(i)
            where[i.series_uid] = key
        else:
            leftovers.append(i)
    return where, leftovers


def _attach_structures(items, sessions, numbered, planning, planning_ct, first_day, where, session_of):
    """Rules 3 and 4 for RTSTRUCTs: where the referenced CT series went, else by fraction number, else
    by day, else to planning when dated before the first fraction. Returns the leftovers."""
    leftovers = []
    for s in (i for i in items if i.kind == "rtstruct"):
        target = next((where[u] for u in s.referenced_series if u in where), None)
        if target is None:
            if numbered and s.fraction_number is not None and ("n", s.fraction_number) in sessions:
                target = ("n", s.fraction_number)
            elif session_of(s) is not None:
                target = session_of(s)
            elif planning_ct is not None and (first_day is None or (s.day and s.day < first_day)):
                target = "planning"
        if target == "planning":
            planning["rtstruct"].append(s)
        elif target is not None:
            sessions[target].append(s)
        else:
            leftovers.append(s)
    return leftovers


def _relative_paths(paths, root):
    return [Path(os.path.relpath(p, root)).as_posix() for p in paths]


def _pick(members, kind, label, patient_id, root):
    """The manifest's file list for one modality of one session: one series per modality (the CT/PET
    series with the most slices; the RTSTRUCT that references the session's CT, else the latest), every
    RTDOSE."""
    chosen = [m for m in members if m.kind == kind]
    if kind in ("ct", "pet", "rtstruct") and len(chosen) > 1:
        ct_uids = {m.series_uid for m in members if m.kind == "ct"}
        best = (max(chosen, key=lambda m: len(m.files)) if kind != "rtstruct"
                else max(chosen, key=lambda m: (bool(m.referenced_series & ct_uids), m.time is not None,
                                                m.time or _dt.datetime.min)))
        log.warning("patient %s %s: %d %s items; using %s", patient_id, label, len(chosen), kind, best.files[0])
        chosen = [best]
    return _relative_paths([f for m in chosen for f in _order_files(m)], root)


def _fractions(sessions, numbered, patient_id, root) -> list:
    """The sessions as Fractions indexed 1..n: by fraction number where all doses have one, else by time."""
    def order(key):
        members = sessions[key]
        times = [m.time for m in members if m.time]
        return (key[1] if numbered else 0, min(times) if times else _dt.datetime.max)

    fractions = []
    for index, key in enumerate(sorted(sessions, key=order), start=1):
        members = sessions[key]
        times = [m.time for m in members if m.time]
        numbers = [m.fraction_number for m in members if m.fraction_number is not None]
        label = f"fraction {index}"
        fractions.append(Fraction(index=index, datetime=min(times).isoformat() if times else None,
                                  fraction_number=numbers[0] if numbers else None,
                                  ct=_pick(members, "ct", label, patient_id, root),
                                  pet=_pick(members, "pet", label, patient_id, root),
                                  dose=_pick(members, "dose", label, patient_id, root),
                                  rtstruct=_pick(members, "rtstruct", label, patient_id, root)))
    return fractions


def _planning_fraction(planning, planning_ct, patient_id, root):
    """Fraction 0 (planning CT and structures), or None when there is neither."""
    if not (planning["ct"] or planning["rtstruct"]):
        return None
    plan_time = planning_ct.time.isoformat() if planning_ct and planning_ct.time else None
    return Fraction(index=0, datetime=plan_time, ct=_pick(planning["ct"], "ct", "planning", patient_id, root),
                    rtstruct=_pick(planning["ct"] + planning["rtstruct"], "rtstruct", "planning", patient_id, root))


def _organ_map(items) -> dict:
    """Every ROI name of the patient's RTSTRUCTs -> canonical organ (None where the synonyms have no match)."""
    from COMPASSLib.resources import canonical_organ

    organs = {}
    for s in (i for i in items if i.kind == "rtstruct"):
        for name in s.roi_names:
            organs.setdefault(name, canonical_organ(name))
    return organs


def _build_patient(patient_id, items, root):
    """One patient's Patient entry from its items (the grouping rule of the module docstring)."""
    doses = [i for i in items if i.kind == "dose"]
    numbered = all(d.fraction_number is not None for d in doses) and doses

    # 2. fraction sessions from the doses
    sessions = _dose_sessions(doses, numbered)
    first_day = min((d.day for d in doses if d.day), default=None)

    # 4. planning CT
    planning_ct = _planning_ct(items, first_day)

    if not doses:   # fractions are the CT/PET days after planning (warned about in `scan`)
        _add_imaging_days(sessions, items, planning_ct)
    session_of = _nearest_session(sessions)

    # 3. attach images and structures
    planning = {"ct": [planning_ct] if planning_ct else [], "rtstruct": []}
    where, leftovers = _attach_images(items, sessions, numbered, planning_ct, session_of)
    leftovers += _attach_structures(items, sessions, numbered, planning, planning_ct, first_day, where, session_of)
    for i in leftovers:
        log.warning("patient %s: %s %s matches no fraction (no dose that day); not listed",
                    patient_id, i.kind, i.files[0])

    fractions = _fractions(sessions, numbered, patient_id, root)
    plan = _planning_fraction(planning, planning_ct, patient_id, root)
    frames = Counter(i.frame_of_reference_uid for i in items if i.kind in ("ct", "pet") and i.frame_of_reference_uid)
    weights = [i.weight_kg for i in items if i.weight_kg]
    return Patient(id=patient_id, fractions=fractions, planning=plan, organs=_organ_map(items),
                   frame_of_reference_uid=frames.most_common(1)[0][0] if frames else None,
                   weight_kg=weights[0] if weights else None)


def scan(root, manifest_path=None) -> Cohort:
    """Group the DICOM files under `root` into a Cohort (paths relative to the manifest's folder,
    `root` when `manifest_path` is not given). See the module docstring for the grouping rule."""
    root = Path(root)
    if not root.is_dir():
        raise InputError("scan folder is a file, not a folder" if root.exists() else "scan folder not found",
                         file=root)
    base = Path(manifest_path).resolve().parent if manifest_path else root.resolve()
    items = _collect(root)
    if not items:
        raise InputError("no DICOM files with a PatientID found", file=root)
    patients = [_build_patient(pid, items[pid], base) for pid in sorted(items)]
    cohort = Cohort(patients, root=base)
    for line in missing_dose_warnings(cohort):
        log.warning("%s", line)
    return cohort


def missing_doses(cohort) -> dict:
    """{patient id: [Fraction, ...]} of the fractions listed without a dose file (a patient whose RTDOSE
    files were not in the scanned folder); patients with a dose in every fraction are not listed."""
    return {p.id: [f for f in p.fractions if not f.dose] for p in cohort.patients
            if any(not f.dose for f in p.fractions)}


def missing_dose_warnings(cohort) -> list:
    """One line per patient with fractions lacking dose: the patient, its sessions and what follows."""
    lines = []
    for pid, fractions in missing_doses(cohort).items():
        total = len(cohort.patient(pid).fractions)
        sessions = ", ".join(f"fraction {f.index}" + (f" ({f.datetime})" if f.datetime else "") for f in fractions)
        lines.append(f"patient {pid}: no RTDOSE for {len(fractions)} of its {total} session(s) ({sessions}); "
                     "they are listed without dose, and `compass features`/`compass run` leave this patient out "
                     "(fraction has no dose file) until its RTDOSE files are added to the folder (then scan "
                     "again) or to those fractions' \"dose\" lists in the manifest")
    return lines
