"""One synthetic patient, simulated without writing anything: anatomy, plan, delivered dose per fraction,
the hidden radiosensitivity, the organ signals and the drawn outcome. The DICOM writer and the statistical
tests both start from this, so the files and the hidden truth always agree."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from COMPASSLib.synth import toxicity
from COMPASSLib.synth.anatomy import AnatomyParams, ball, draw_anatomy, organ_masks
from COMPASSLib.synth.contours import fill_slice_holes
from COMPASSLib.synth.dose import PlanParams, draw_plan, fraction_dose, gtv_radius
from COMPASSLib.synth.grid import Grid, ct_grid
from COMPASSLib.synth.pet import PetParams, draw_pet


@dataclass
class SimPatient:
    id: str
    index: int                  # 1-based patient number
    size: str                   # "small" or "full" (grid.SIZES)
    grid: Grid
    anatomy: AnatomyParams
    plan: PlanParams
    masks: list                 # per scan: index 0 planning, k fraction k; ROI name -> bool array
    doses_gy: list              # per fraction (index k-1): delivered dose, float64 (z, y, x)
    sensitivity: dict           # organ -> hidden radiosensitivity
    signals: dict = field(default_factory=dict)    # organ -> toxicity.organ_signals(...)
    outcomes: dict = field(default_factory=dict)   # organ -> toxicity.draw_outcome(...)
    seed: int = 0
    rngs: dict = field(default_factory=dict)       # streams of the simulation, by purpose
    pet: PetParams | None = None                    # weight, injected activity, uptake, tumour SUV
    patient_risk: float = 0.0                       # hidden log-odds offset shared by the organs
    readout: str = "pet"                            # which scan shows the radiosensitivity (toxicity.READOUTS)
    response_fractions: int | None = None           # course the tumour's SUV response follows (None: this
                                                    # one; a counterfactual keeps the original course's)

    @property
    def fractions(self) -> int:
        return len(self.doses_gy)

    def image_rng(self, scan: int, modality: str) -> np.random.Generator:
        """The noise stream of one image (scan 0 = planning), independent of the others, so any image
        can be made again on its own (tests compare read-back files with it)."""
        code = {"CT": 1, "PT": 2}[modality]
        return np.random.default_rng([int(self.seed), self.index, int(scan), code])


def patient_id(index: int) -> str:
    return f"SYN{index:03d}"


def patient_streams(seed: int, index: int) -> dict:
    """Independent random streams per patient and purpose: patient 5 is the same whether the cohort has
    8 or 100 patients, and drawing CT noise never changes the anatomy."""
    names = ("anatomy", "plan", "toxicity", "scanner")
    children = np.random.SeedSequence([int(seed), int(index)]).spawn(len(names))
    return {n: np.random.default_rng(c) for n, c in zip(names, children)}


def simulate_patient(seed: int, index: int, fractions: int, size: str, readout: str = "pet") -> SimPatient:
    grid = ct_grid(size)
    rngs = patient_streams(seed, index)
    anatomy = draw_anatomy(rngs["anatomy"], grid)
    plan = draw_plan(rngs["plan"], anatomy, fractions)
    # Only the GTV changes between scans (it shrinks); the organs are shared by all of them.
    organs = {name: fill_slice_holes(m) for name, m in organ_masks(grid, anatomy).items()}
    masks = [{**organs, "GTV": ball(grid, anatomy.gtv_c_mm, gtv_radius(anatomy, plan, k))}
             for k in range(fractions + 1)]
    doses = [fraction_dose(grid, masks[k]["BODY"], masks[k]["GTV"], anatomy, plan, k)
             for k in range(1, fractions + 1)]
    p = SimPatient(patient_id(index), index, size, grid, anatomy, plan, masks, doses, {}, seed=int(seed), rngs=rngs,
                   pet=draw_pet(rngs["scanner"], anatomy.body_a_mm, anatomy.body_b_mm), readout=readout)
    return apply_hidden_model(p)


def apply_hidden_model(p: SimPatient) -> SimPatient:
    """Draw the hidden factors (radiosensitivity, patient risk) and each organ's signals and outcome from
    the patient's toxicity stream, started afresh: the same draws for the same patient whatever its doses,
    so a counterfactual course (synth.counterfactual) meets the same patient with the same luck, and its
    outcomes differ from the original's only through its doses."""
    rng = patient_streams(p.seed, p.index)["toxicity"]
    p.rngs["toxicity"] = rng
    p.sensitivity = toxicity.draw_radiosensitivity(rng)
    p.patient_risk = toxicity.draw_patient_risk(rng)
    for organ in toxicity.ORGANS:
        p.signals[organ] = toxicity.organ_signals(p.doses_gy, p.masks[0][organ], organ, p.sensitivity[organ],
                                                   p.grid.spacing_mm, p.readout)
        p.outcomes[organ] = toxicity.draw_outcome(rng, organ, p.sensitivity[organ], p.signals[organ],
                                                    p.patient_risk)
    return p


def truth_rows(p: SimPatient) -> list:
    """One row per organ: the hidden parameters, the signals and the outcome."""
    rows = []
    for organ in toxicity.ORGANS:
        s = {k: v for k, v in p.signals[organ].items() if k != "injury"}
        rows.append({"patient": p.id, "organ": organ, "site": p.anatomy.site,
                     "radiosensitivity": p.sensitivity[organ],
                     "patient_risk": p.patient_risk, **s, **p.outcomes[organ]})
    return rows
