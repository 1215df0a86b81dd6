"""Orchestration: simulate each patient, write its DICOM, then outcomes.csv, ground_truth.json and
cohort.json (written last, so a cohort.json on disk means a complete cohort)."""
from __future__ import annotations

import datetime as _dt
from pathlib import Path

from COMPASSLib.atomic import write_json
from COMPASSLib.cohort import Cohort, Fraction, Outcome, Patient, write_outcomes
from COMPASSLib.errors import InputError
from COMPASSLib.provenance import record
from COMPASSLib.synth import toxicity
from COMPASSLib.synth.anatomy import ROI_NAMES, ct_hu, tissue_classes
from COMPASSLib.synth.dicom_writer import (StudyContext, uid, write_ct_series, write_pet_series,
                                           write_rtdose, write_rtstruct)
from COMPASSLib.synth.grid import SIZES, pet_factor
from COMPASSLib.synth.patient import SimPatient, simulate_patient, truth_rows
from COMPASSLib.synth.pet import ORGAN_CLASS, suv_image

CT_NOISE_HU = {"small": 8.0, "full": 15.0}
FIRST_DAY = _dt.date(2025, 1, 6)        # a Monday; every date is this plus seed- and patient-derived days
PLANNING_DAYS_BEFORE = 7
FRACTION_TIME = "090000"
PLANNING_TIME = "140000"


def treatment_days(seed: int, index: int, fractions: int) -> list:
    """Planning day and consecutive treatment weekdays for a patient (no wall clock involved)."""
    start = FIRST_DAY + _dt.timedelta(weeks=int(seed) % 52 + 2 * (index - 1))
    days, d = [], start
    while len(days) < fractions:
        if d.weekday() < 5:
            days.append(d)
        d += _dt.timedelta(days=1)
    return [start - _dt.timedelta(days=PLANNING_DAYS_BEFORE)] + days


def _validate(patients, fractions, seed, size, readout="pet"):
    if readout not in toxicity.READOUTS:
        raise InputError(f"unknown readout {readout!r}; choose one of {', '.join(toxicity.READOUTS)}")
    if size not in SIZES:
        raise InputError(f"unknown synthetic cohort size {size!r}; choose one of {', '.join(SIZES)}")
    if int(patients) < 1 or int(fractions) < 1:
        raise InputError(f"need at least 1 patient and 1 fraction (got {patients} patients, {fractions} fractions)")
    if int(seed) < 0:
        raise InputError(f"seed must be >= 0 (got {seed})")


def draw_truth(patients: int = 40, fractions: int = 5, seed: int = 0, size: str = "small",
               readout: str = "pet") -> list:
    """The hidden truth and organ signals of a cohort, without writing any file (for statistics):
    one dict per patient x organ, identical to what generate_cohort would draw for the same arguments."""
    _validate(patients, fractions, seed, size, readout)
    rows = []
    for i in range(1, int(patients) + 1):
        rows += truth_rows(simulate_patient(seed, i, fractions, size, readout))
    return rows


def generate_cohort(out_dir, patients: int = 8, fractions: int = 5, seed: int = 0, size: str = "full",
                    progress=None, workers: int = 1, readout: str = "pet", scheduler=None) -> Path:
    """Write a synthetic thorax cohort (DICOM, outcomes.csv, ground_truth.json, cohort.json) into
    `out_dir` and return the path of its cohort.json. `progress` (COMPASSLib.progress) hears each patient.
    `workers` > 1 writes patients in that many local processes, `scheduler` (a Dask address, Client or
    COMPASSLib.executors.Executor) on a Dask cluster whose workers see `out_dir` (a shared file system);
    every patient has its own random streams, so the files are the same wherever they were made.
    `readout` ("pet", "ct"): which scan shows the hidden radiosensitivity (synth.toxicity.READOUTS)."""
    _validate(patients, fractions, seed, size, readout)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    made = _patients(out, int(patients), int(fractions), int(seed), size, int(workers), readout, scheduler, progress)
    settings = {"patients": int(patients), "fractions": int(fractions), "seed": int(seed), "size": size}
    if readout != "pet":   # the default cohort's files stay byte-identical to earlier versions
        settings["readout"] = readout
    return write_cohort_files(out, made, settings, toxicity.parameters(int(fractions)),
                              "COMPASSLib.synth.generate_cohort")


def write_cohort_files(out: Path, made: list, settings: dict, model: dict, generator: str) -> Path:
    """outcomes.csv, ground_truth.json, synth_provenance.json and, last, cohort.json of the written
    patients `made` ((manifest entry, truth) pairs in patient order); returns the cohort.json path."""
    outcomes = [Outcome(entry.id, r["organ"], r["grade"], r["onset_fraction"])
                for entry, truth in made for r in truth["organs"]]
    write_outcomes(out / "outcomes.csv", outcomes)
    write_json(out / "ground_truth.json", {
        "note": "hidden parameters of the synthetic cohort; no part of the COMPASS pipeline reads this file",
        "settings": settings, "toxicity_model": model, "patients": [truth for _, truth in made]})
    # Provenance without the wall-clock fields, so the same seed gives byte-identical files.
    prov = record(settings=settings, generator=generator)
    prov.pop("created", None)
    prov.pop("command", None)
    write_json(out / "synth_provenance.json", prov)
    cohort = Cohort([entry for entry, _ in made], root=out)
    return cohort.save(out / "cohort.json")


def _simulate_and_write(out: Path, seed: int, index: int, fractions: int, size: str, readout: str = "pet"):
    sim = simulate_patient(seed, index, fractions, size, readout)
    return write_patient(out, sim, seed), patient_truth(sim)


def _patients(out: Path, patients: int, fractions: int, seed: int, size: str, workers: int, readout: str,
              scheduler=None, progress=None) -> list:
    """(manifest entry, truth) per patient, in patient order, made in this process, a local pool or on a
    Dask cluster (COMPASSLib.executors); tasks finish in any order, each writes only its own patient."""
    from COMPASSLib.executors import using

    tasks = [(out, seed, i, fractions, size, readout) for i in range(1, patients + 1)]
    made = [None] * patients
    with using(workers, scheduler) as ex:
        for done in ex.run(_simulate_and_write, tasks, progress, "synthetic patient {done}/{total}"):
            made[done.index] = done.value
    return made


def patient_truth(sim: SimPatient) -> dict:
    return {"id": sim.id, "anatomy": sim.anatomy.to_dict(), "plan": sim.plan.to_dict(), "pet": sim.pet.to_dict(),
            "organs": truth_rows(sim)}


def scan_images(sim: SimPatient, k: int):
    """The CT (HU, CT grid) and PET (SUVbw, PET grid; None for planning) of scan k (0 = planning),
    exactly as written to the files before quantisation."""
    classes = tissue_classes(sim.grid, sim.anatomy, sim.masks[k])
    hu = ct_hu(sim.grid, classes, sim.image_rng(k, "CT"), CT_NOISE_HU[sim.size])
    if sim.readout == "ct" and k >= 2:
        for organ in toxicity.ORGANS:   # the inflamed organ's density rises (the "ct" readout)
            mask = classes[ORGAN_CLASS[organ]]
            injury = toxicity.inflammation_before(sim.doses_gy, mask, organ, sim.sensitivity[organ], k)
            hu[mask] += (toxicity.CT_GAIN_HU * injury).astype(hu.dtype)
    suv = suv_image(sim, classes, sim.pet, k, sim.image_rng(k, "PT")) if k >= 1 else None
    return hu, suv


def write_patient(out: Path, sim: SimPatient, seed: int, resimulated_after: int | None = None,
                  scenario: str = "") -> Patient:
    """All DICOM of one patient; returns its manifest entry (paths relative to `out`). A counterfactual
    course (synth.counterfactual) names its `scenario` and the fraction it departs after: the sessions up
    to `resimulated_after` are the original's (same UIDs and bytes), the later ones get UIDs of their own
    (so the two courses can share one DICOM database) and say "counterfactual" in their descriptions."""
    days = treatment_days(seed, sim.index, sim.fractions)
    frame_uid = uid(seed, sim.id, "frame")
    plan_uid = uid(seed, sim.id, "plan")
    name = f"SYN^{sim.index:03d}"
    entry = Patient(id=sim.id, organs={n: n for n in ROI_NAMES}, frame_of_reference_uid=frame_uid,
                    weight_kg=sim.pet.weight_kg)
    pet_grid = sim.grid.downsampled(pet_factor(sim.size))
    rel = lambda p: p.relative_to(out).as_posix()  # noqa: E731
    for k in range(sim.fractions + 1):
        folder = out / sim.id / ("plan" if k == 0 else f"F{k}")
        tag = f"{sim.id}/{'plan' if k == 0 else k}"
        description = "Planning" if k == 0 else f"Fraction {k}"
        if resimulated_after is not None and k > resimulated_after:
            tag, description = f"{tag}/counterfactual {scenario}", f"{description} counterfactual"
        ctx = StudyContext(seed=seed, patient_id=sim.id, patient_name=name,
                           frame_uid=frame_uid, study_uid=uid(seed, tag, "study"),
                           study_date=days[k].strftime("%Y%m%d"),
                           study_time=PLANNING_TIME if k == 0 else FRACTION_TIME, study_id=f"{k}",
                           description=description)
        hu, suv = scan_images(sim, k)
        ct_series = uid(seed, tag, "CT series")
        ct_files = write_ct_series(folder / "CT", hu, sim.grid, ctx, ct_series, tag)
        rs = folder / "RS.dcm"
        write_rtstruct(rs, sim.masks[k], sim.grid, ctx, uid(seed, tag, "RS series"), tag, ct_series, ct_files)
        fr = Fraction(index=k, datetime=days[k].isoformat() + "T" + _iso_time(ctx.study_time),
                      fraction_number=k or None, ct=[rel(p) for p, _ in ct_files], rtstruct=[rel(rs)])
        if k == 0:
            entry.planning = fr
            continue
        scan_time = "093000"
        injection = _minus_seconds(scan_time, sim.pet.uptake_s)
        pet_files = write_pet_series(folder / "PT", suv, pet_grid, ctx, sim.pet, uid(seed, tag, "PT series"),
                                     tag, scan_time, injection)
        rd = folder / "RD.dcm"
        write_rtdose(rd, sim.doses_gy[k - 1], sim.grid, ctx, uid(seed, tag, "RD series"), tag, k, plan_uid)
        fr.pet, fr.dose = [rel(p) for p, _ in pet_files], [rel(rd)]
        entry.fractions.append(fr)
    return entry


def _iso_time(hhmmss: str) -> str:
    return f"{hhmmss[:2]}:{hhmmss[2:4]}:{hhmmss[4:6]}"


def _minus_seconds(hhmmss: str, seconds: float) -> str:
    t = _dt.datetime(2000, 1, 1, int(hhmmss[:2]), int(hhmmss[2:4]), int(hhmmss[4:6])) - _dt.timedelta(seconds=seconds)
    return t.strftime("%H%M%S")
