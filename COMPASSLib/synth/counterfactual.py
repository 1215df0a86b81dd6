"""The generator's counterfactual: the same synthetic patient (anatomy, radiosensitivity, patient risk,
PET kinetics, the luck of its outcome draws) whose fractions after `after` are delivered differently --
organ doses scaled for the rest of the course (a replan that spares an organ), or the remaining physical
dose split over another number of fractions (hypo- or hyperfractionation). Nothing hidden is read from
ground_truth.json: the patient is simulated again from the seed and size in the cohort's
synth_provenance.json, and the hidden model (synth.toxicity) is applied to the new course. It is the
ground truth that `compass whatif` projections are checked against (docs/synthetic_cohort.md).

    true_probability(cohort_dir, patient_id, after, scale=None, fractions=None) -> {organ: probability}
    resimulate_patient(cohort_dir, patient_id, after, out_dir, scale=None, fractions=None) -> cohort.json path
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
from scipy.ndimage import distance_transform_edt

from COMPASSLib.atomic import read_json, staged_dir
from COMPASSLib.errors import InputError
from COMPASSLib.provenance import sha256_file
from COMPASSLib.synth import toxicity
from COMPASSLib.synth.patient import SimPatient, apply_hidden_model, patient_id as id_of, simulate_patient

# A replan cannot put a dose step at an organ's outline: outside the organ the factor returns to 1 as a
# Gaussian of the distance to the organ with this width (at 15 mm 61 % of the organ's change remains, at
# 30 mm 14 %), the dose gradient of a replan that spares it. A step would read as a hot spot in the hidden
# model's hot-spot index (thin organs: cord, esophagus) and make a spared organ *more* at risk; with 10 mm
# that still happened for 19 of 432 cord and esophagus scenarios, with 15 mm for 2 (by < 0.005). The price
# is that a neighbour shares some of the sparing (the esophagus beside a spared heart: docs).
SPARING_FALLOFF_MM = 15.0


@dataclasses.dataclass(frozen=True)
class Scenario:
    """What changes after fraction `after`: organ -> dose factor (only factors != 1 kept) and the course's
    fraction count (`fractions` == the original's when unchanged)."""
    after: int
    scale: dict
    fractions: int

    def name(self) -> str:
        """A stable text naming the scenario (UIDs of the re-simulated files derive from it)."""
        parts = [f"after={self.after}"] + [f"{o}={self.scale[o]!r}" for o in sorted(self.scale)]
        return " ".join(parts + [f"fractions={self.fractions}"])

    def changes(self, original_fractions: int) -> bool:
        """Whether the course differs from the original one (of `original_fractions`)."""
        return bool(self.scale) or (self.fractions != original_fractions and self.after < original_fractions)

    def to_dict(self) -> dict:
        return {"after": self.after, "scale": dict(self.scale), "fractions": self.fractions}


def true_probability(cohort_dir, patient_id: str, after: int, scale: dict | None = None,
                     fractions: int | None = None) -> dict:
    """The hidden model's probability of toxicity (grade >= 1; what ground_truth.json records per organ)
    of `patient_id` in the synthetic cohort `cohort_dir` if the fractions after `after` had their organ
    doses scaled by `scale` (organ -> factor; organs not named unchanged) and the course had `fractions`
    fractions (None: as in the cohort; another count: the remaining physical dose split evenly over
    fractions - after fractions). Organ -> probability."""
    sim, _, _ = counterfactual_patient(cohort_dir, patient_id, after, scale, fractions)
    return {organ: sim.outcomes[organ]["probability"] for organ in toxicity.ORGANS}


def resimulate_patient(cohort_dir, patient_id: str, after: int, out_dir, scale: dict | None = None,
                       fractions: int | None = None) -> Path:
    """Write into `out_dir` a cohort (cohort.json, outcomes.csv, ground_truth.json, DICOM) holding the
    counterfactual course of `patient_id` (arguments as `true_probability`): the planning session and
    fractions 1..after byte-identical to the original's files (checked against them), the later fractions
    re-simulated under the scenario (dose, GTV, PET and CT following the hidden model) with UIDs of their
    own. Whole or absent (staged). Returns the path of out_dir/cohort.json."""
    from COMPASSLib.synth.cohort import patient_truth, write_cohort_files, write_patient

    source = Path(cohort_dir)
    if Path(out_dir).resolve() == source.resolve():
        raise InputError("the counterfactual cohort must go into another folder than the cohort it comes from",
                         file=out_dir)
    sim, original, scenario = counterfactual_patient(source, patient_id, after, scale, fractions)
    settings = {**_settings(source), "patients": 1, "fractions": scenario.fractions,
                "counterfactual": {"cohort": str(source), "patient": sim.id, **scenario.to_dict()}}
    truth = patient_truth(sim)
    truth["counterfactual"] = {**scenario.to_dict(), "original_fractions": original.fractions,
                               "original": {o: original.outcomes[o] for o in toxicity.ORGANS}}
    # A scenario that changes nothing is the original course: all its files are the original's.
    departs = scenario.after if scenario.changes(original.fractions) else original.fractions
    with staged_dir(out_dir) as stage:
        entry = write_patient(stage, sim, sim.seed, resimulated_after=departs, scenario=scenario.name())
        _check_unchanged(stage, source, sim.id, departs)
        write_cohort_files(stage, [(entry, truth)], settings, toxicity.parameters(scenario.fractions),
                           "COMPASSLib.synth.counterfactual.resimulate_patient")
    return Path(out_dir) / "cohort.json"


def counterfactual_patient(cohort_dir, patient_id: str, after: int, scale: dict | None = None,
                           fractions: int | None = None) -> tuple:
    """(the counterfactual SimPatient, the original SimPatient, the Scenario) of a patient of a synthetic
    cohort."""
    settings = _settings(Path(cohort_dir))
    index = _patient_index(cohort_dir, settings, patient_id)
    scale = check_scale(scale, patient=patient_id)
    course = int(settings["fractions"])
    n = _check_course(after, fractions, course, patient_id, cohort_dir)
    original = simulate_patient(int(settings["seed"]), index, course, settings["size"],
                                settings.get("readout", "pet"))
    scenario = Scenario(int(after), scale, n)
    return course_under(original, scenario), original, scenario


def check_scale(scale: dict | None, patient=None) -> dict:
    """organ -> factor with the factors that change something; InputError for an organ the hidden model
    does not know or a factor that is negative or not a number."""
    out = {}
    for organ, factor in (scale or {}).items():
        if organ not in toxicity.ORGANS:
            raise InputError(f"unknown organ {organ!r} to scale; the synthetic organs at risk are "
                             f"{', '.join(toxicity.ORGANS)}", patient=patient)
        try:
            f = float(factor)
        except (TypeError, ValueError):
            raise InputError(f"the dose factor of {organ} must be a number, not {factor!r}", patient=patient) from None
        if not math.isfinite(f) or f < 0:
            raise InputError(f"the dose factor of {organ} must be a finite number >= 0 (got {factor!r})",
                             patient=patient)
        if f != 1.0:
            out[organ] = f
    return out


def course_under(original: SimPatient, scenario: Scenario) -> SimPatient:
    """The original patient's course with fractions after `scenario.after` changed (the hidden model
    applied again, its random draws replayed)."""
    a, n, k = scenario.after, scenario.fractions, original.fractions
    factor = dose_factor(original, scenario.scale)
    remaining = [d if factor is None else d * factor for d in original.doses_gy[a:]]
    doses, masks = original.doses_gy[:a] + remaining, original.masks
    if n != k:
        # The same remaining physical dose in n - a equal fractions; the GTV keeps the original course's
        # shrinkage, and stays as it was at the original last fraction beyond it.
        even = sum(remaining) / (n - a)
        doses = original.doses_gy[:a] + [even] * (n - a)
        masks = original.masks[: a + 1] + [original.masks[min(j, k)] for j in range(a + 1, n + 1)]
    sim = dataclasses.replace(original, doses_gy=doses, masks=masks, sensitivity={}, signals={}, outcomes={},
                              rngs=dict(original.rngs), response_fractions=k)
    return apply_hidden_model(sim)


def dose_factor(sim: SimPatient, scale: dict):
    """Voxelwise factor on the remaining fractions' doses (None when nothing is scaled): exactly the
    organ's factor in every voxel of a scaled organ (where scaled organs overlap, the smallest factor:
    sparing wins, whatever the order); outside them the factor returns to 1 with the distance to each
    scaled organ (SPARING_FALLOFF_MM), the organ with the largest change there deciding. Organs not
    scaled get that smooth field too where they lie next to a scaled one (a replan spares their
    neighbourhood as well); their dose inside is otherwise unchanged."""
    if not scale:
        return None
    sp = sim.grid.spacing_mm
    change = np.zeros(sim.grid.shape)
    inside = np.full(sim.grid.shape, np.inf)
    for organ in toxicity.ORGANS:
        if organ not in scale:
            continue
        mask = sim.masks[0][organ]          # the organs are the same on every scan
        if mask.any():
            distance = distance_transform_edt(~mask, sampling=(sp[2], sp[1], sp[0]))
            c = (scale[organ] - 1.0) * np.exp(-0.5 * (distance / SPARING_FALLOFF_MM) ** 2)
            stronger = np.abs(c) > np.abs(change)
            change[stronger] = c[stronger]
        inside[mask] = np.minimum(inside[mask], scale[organ])
    factor = 1.0 + change
    organs = np.isfinite(inside)
    factor[organs] = inside[organs]
    return factor


def _settings(cohort_dir: Path) -> dict:
    """The settings that made a synthetic cohort (its synth_provenance.json)."""
    path = Path(cohort_dir) / "synth_provenance.json"
    if not path.is_file():
        raise InputError("not a synthetic cohort of `compass synth` (no synth_provenance.json)", file=cohort_dir)
    settings = read_json(path, "synthetic cohort provenance").get("settings", {})
    if "counterfactual" in settings:
        raise InputError("this cohort is itself a counterfactual; give the cohort it was made from "
                         f"({settings['counterfactual'].get('cohort')})", file=path)
    missing = [k for k in ("patients", "fractions", "seed", "size") if k not in settings]
    if missing:
        raise InputError(f"synthetic cohort provenance lacks the settings {', '.join(missing)}", file=path)
    return settings


def _patient_index(cohort_dir, settings: dict, patient_id: str) -> int:
    n = int(settings["patients"])
    for i in range(1, n + 1):
        if id_of(i) == patient_id:
            return i
    raise InputError(f"patient {patient_id!r} is not in this synthetic cohort ({id_of(1)} .. {id_of(n)})",
                     file=Path(cohort_dir) / "cohort.json", patient=patient_id)


def _check_course(after, fractions, course: int, patient_id: str, cohort_dir) -> int:
    """The counterfactual course's fraction count; InputError for an `after` outside 0..course or a
    fraction count that leaves no fraction to re-simulate."""
    where = {"patient": patient_id, "file": Path(cohort_dir) / "cohort.json"}
    if isinstance(after, bool) or not isinstance(after, (int, np.integer)) or not 0 <= after <= course:
        raise InputError(f"--after {after!r} is beyond the course: give a fraction from 0 to {course} "
                         f"(the fractions delivered as in the cohort)", **where)
    n = course if fractions is None else fractions
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"the number of fractions must be a whole number >= 1 (got {fractions!r})", **where)
    if n != course and n <= after:
        raise InputError(f"a course of {n} fractions leaves nothing after fraction {after} to re-simulate "
                         f"(give more than {after})", **where)
    if n != course and after == course:
        raise InputError(f"after fraction {after} no dose remains to split into {n - after} fractions", **where)
    return int(n)


def _check_unchanged(stage: Path, source: Path, pid: str, after: int) -> None:
    """The planning session and fractions 1..after as written again must be the original's files byte for
    byte; otherwise the cohort was written by another version of the generator (or changed since)."""
    for k in range(after + 1):
        folder = f"{pid}/{'plan' if k == 0 else f'F{k}'}"
        for new in sorted((stage / folder).rglob("*")):
            if not new.is_file():
                continue
            old = source / new.relative_to(stage)
            if not old.is_file() or sha256_file(old) != sha256_file(new):
                raise InputError("the synthetic cohort's file differs from what this generator makes for its "
                                 "seed (written by another version, or changed since): no counterfactual of it",
                                 file=old, patient=pid, fraction=k or None)
