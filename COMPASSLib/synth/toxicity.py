"""THE HIDDEN TOXICITY MODEL of the synthetic cohort: every parameter of it is in this file.

For each organ at risk (SpinalCord, Heart, Esophagus) of a patient:
  1. radiosensitivity  s ~ LogNormal(0, RADIOSENSITIVITY_SIGMA)      (hidden, per patient and organ)
     patient risk      r ~ Normal(0, PATIENT_RISK_SD)                 (hidden, per patient, all organs)
  2. inflammation after fraction k, per voxel:  I_k = s * (1 - exp(-BED_k / INFLAMMATION_BED_GY[organ]))
     with BED_k the cumulative BED (organ alpha/beta from Resources/organs.yaml). The PET of fraction k
     is taken before that day's beam, so it shows I_(k-1): SUV = baseline * (1 + PET_GAIN * I).
  3. signals: dose      = the organ's mean cumulative BED (and, recorded only, the gEUD of the course
                          EQD2 that an LKB model sees, and the mean physical dose)
              hotspot_index = dose-heterogeneity (hot-spot) index: RMS in the organ of
                          (BED - local mean) / (local mean + floor), local mean a Gaussian of
                          HOTSPOT_SIGMA_MM, floor HOTSPOT_FLOOR_GY plus HOTSPOT_FLOOR_SHARE of the organ's
                          mean BED (so it measures the shape of the dose, how much sits in small hot
                          spots, not its level). Not a radiomics texture feature nor a texture map.
              pet_rise  = PET_GAIN * mean I_(K-1) (relative rise of the organ's mean SUV, last vs first PET)
  4. logit P(grade >= 1) = INTERCEPT[organ] + r + W_SENSITIVITY * ln(s)
                           + W_HOTSPOT * (hotspot_index - HOTSPOT_REF) / HOTSPOT_SCALE
                           + W_DOSE * ln(mean BED / DOSE_REF_BED_GY[organ])   (relative to the organ's
                             population-typical mean BED: within an organ dose matters, but moderately)
                           + ln(1 - exp(-mean BED / DOSE_GATE_BED_GY))   (no dose, no toxicity)
  5. grade: toxic with that probability; severity = logit + logistic noise gives grade 1, 2 (> GRADE2_AT)
     or 3 (> GRADE3_AT).
  6. onset: the first fraction k after which the organ's inflammation raises its mean SUV by
     ONSET_PET_RISE (PET_GAIN * injury_k, seen on the PET of fraction k + 1; K if never), plus a lag of
     ONSET_LAG_FRACTIONS (2 or 3; stretched in proportion for courses longer than 5 fractions:
     onset_lag); K + 1 means after the course. So the PET shows the rise at least one
     fraction before the symptoms, and the more inflamed organs react earlier.
The radiosensitivity (seen only through the PET trajectory, given the dose) carries the most information,
the hidden patient risk is what nobody can predict, and dose enters relative to what the organ typically
gets, so a mean-dose or LKB model alone reaches a moderate AUC (about 0.6-0.78 on 40 patients) while the
time series holds more (docs/synthetic_cohort.md); the toxic rate is about 40-50 %.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from COMPASSLib.resources import alpha_beta, geud_n

ORGANS = ("SpinalCord", "Heart", "Esophagus")

RADIOSENSITIVITY_SIGMA = 0.9
INFLAMMATION_BED_GY = {"SpinalCord": 4.0, "Heart": 5.0, "Esophagus": 8.0}
PET_GAIN = 0.3
HOTSPOT_SIGMA_MM = 6.0
HOTSPOT_FLOOR_GY = 0.05
HOTSPOT_FLOOR_SHARE = 0.5
HOTSPOT_VOXEL_MM = 6.0

INTERCEPT = {"SpinalCord": -0.5, "Heart": -0.3, "Esophagus": -0.3}
PATIENT_RISK_SD = 0.6
W_DOSE = 1.35
DOSE_GATE_BED_GY = 0.2
DOSE_REF_BED_GY = {"SpinalCord": 2.5, "Heart": 0.5, "Esophagus": 3.0}
W_HOTSPOT = 0.8
HOTSPOT_REF = 0.15
HOTSPOT_SCALE = 0.03
W_SENSITIVITY = 2.2
GRADE2_AT = 1.5
GRADE3_AT = 3.0
ONSET_PET_RISE = 0.04
ONSET_LAG_FRACTIONS = (2, 3)
# The lag is drawn for the 5-fraction reference course (SBRT); a longer course stretches it in proportion
# (30 fractions: 12 or 18), so the symptoms follow the PET rise by the same share of the course, as the
# inflammation itself follows the cumulative BED, which a longer course also spreads over more fractions.
ONSET_LAG_REFERENCE_FRACTIONS = 5

# Where the radiosensitivity shows (`readout`, `compass synth --readout`): "pet" (default) raises the
# inflamed organ's FDG uptake (SUV x (1 + PET_GAIN I)); "ct" leaves the PET at baseline and raises the
# organ's CT density instead (HU + CT_GAIN_HU I: oedema), so a model shaped after the PET rise would miss it.
READOUTS = ("pet", "ct")
CT_GAIN_HU = 50.0


def draw_radiosensitivity(rng: np.random.Generator) -> dict:
    return {o: float(rng.lognormal(0.0, RADIOSENSITIVITY_SIGMA)) for o in ORGANS}


def draw_patient_risk(rng: np.random.Generator) -> float:
    """The patient's own log-odds offset, shared by all its organs (comorbidity, smoking, ...): seen by
    no image or dose, so it is the part of the outcome that nobody can predict."""
    return float(rng.normal(0.0, PATIENT_RISK_SD))


def cumulative_bed(fraction_doses, alpha_beta_gy: float) -> list:
    """Cumulative BED after each fraction: sum of d (1 + d / (alpha/beta))."""
    out, total = [], 0.0
    for d in fraction_doses:
        total = total + d * (1.0 + d / alpha_beta_gy)
        out.append(total)
    return out


def inflammation(bed_gy, organ: str, sensitivity: float):
    """Voxelwise inflammation (0 .. s) that raises the organ's FDG uptake."""
    return sensitivity * (1.0 - np.exp(-np.asarray(bed_gy) / INFLAMMATION_BED_GY[organ]))


def hotspot_index(bed_gy: np.ndarray, mask: np.ndarray, spacing_mm) -> float:
    """Hot-spot (dose-heterogeneity) index: RMS inside the organ of the BED's relative deviation from
    its local mean (Gaussian, HOTSPOT_SIGMA_MM), (BED - local) / (local + floor), floor =
    HOTSPOT_FLOOR_GY + HOTSPOT_FLOOR_SHARE x the organ's mean BED. Relative, floor included, so it
    measures how concentrated the dose is in small hot spots whatever the dose level (a dose-level floor
    would make it a disguised mean dose); the floor keeps the organ's almost unirradiated voxels from
    counting. Measured on a HOTSPOT_VOXEL_MM grid (block means) so that the small and full grids give
    the same value for the same patient. Dimensionless."""
    factors = [max(1, int(round(HOTSPOT_VOXEL_MM / s))) for s in (spacing_mm[2], spacing_mm[1], spacing_mm[0])]
    bed, share = _block_mean(bed_gy, factors), _block_mean(mask.astype(np.float64), factors)
    inside = share >= 0.5
    if not inside.any():          # an organ thinner than a coarse voxel: keep every voxel it touches
        inside = share > 0
    sigma = [HOTSPOT_SIGMA_MM / (s * f) for s, f in zip((spacing_mm[2], spacing_mm[1], spacing_mm[0]), factors)]
    local = gaussian_filter(bed, sigma, mode="nearest")[inside]
    floor = HOTSPOT_FLOOR_GY + HOTSPOT_FLOOR_SHARE * float(bed[inside].mean())
    return float(np.sqrt(np.mean(((bed[inside] - local) / (local + floor)) ** 2)))


def _block_mean(array: np.ndarray, factors) -> np.ndarray:
    """Mean over blocks of factors (z, y, x) voxels (the remainder at the far edges is dropped)."""
    fz, fy, fx = factors
    nz, ny, nx = (n // f for n, f in zip(array.shape, factors))
    a = array[: nz * fz, : ny * fy, : nx * fx]
    return a.reshape(nz, fz, ny, fy, nx, fx).mean(axis=(1, 3, 5))


def geud(values: np.ndarray, n: float) -> float:
    return float(np.mean(values ** (1.0 / n)) ** n)


def inflammation_before(fraction_doses, mask: np.ndarray, organ: str, sensitivity: float, fraction: int):
    """Voxelwise inflammation inside `mask` seen on the scans of `fraction` (taken before that day's beam:
    cumulative BED of fractions 1..fraction-1); None before any dose."""
    if fraction < 2:
        return None
    bed = cumulative_bed([d[mask] for d in fraction_doses[: fraction - 1]], alpha_beta(organ))[-1]
    return inflammation(bed, organ, sensitivity)


def organ_signals(fraction_doses, mask: np.ndarray, organ: str, sensitivity: float, spacing_mm,
                  readout: str = "pet") -> dict:
    """The signals of one organ from its per-fraction physical dose maps (Gy) and its mask."""
    ab = alpha_beta(organ)
    beds = cumulative_bed([d[mask] for d in fraction_doses], ab)
    eqd2 = beds[-1] / (1.0 + 2.0 / ab)
    final_bed = np.zeros(mask.shape)
    final_bed[mask] = beds[-1]
    # The hot-spot index is measured on the whole BED map so the organ's edges see their true neighbourhood.
    full_bed = cumulative_bed(fraction_doses, ab)[-1]
    injury = [float(inflammation(b, organ, sensitivity).mean()) for b in beds]
    k = len(fraction_doses)
    return {
        "mean_bed_gy": float(beds[-1].mean()),
        "mean_dose_gy": float(sum(d[mask].mean() for d in fraction_doses)),
        "geud_eqd2_gy": geud(np.maximum(eqd2, 1e-6), geud_n(organ)),
        "hotspot_index": hotspot_index(full_bed, mask, spacing_mm),
        **_readout_signal(readout, injury[k - 2] if k >= 2 else 0.0),
        "injury": injury,
    }


def _readout_signal(readout: str, last_injury: float) -> dict:
    """What the scans show of the radiosensitivity: the relative mean-SUV rise from the first to the last
    PET ("pet"), or the organ's mean CT rise in HU ("ct")."""
    if readout == "ct":
        return {"ct_rise_hu": CT_GAIN_HU * last_injury}
    return {"pet_rise": PET_GAIN * last_injury}


def draw_outcome(rng: np.random.Generator, organ: str, sensitivity: float, signals: dict,
                 patient_risk: float = 0.0) -> dict:
    """Grade (0-3), onset fraction (None when grade 0) and the probability the model gave."""
    z = (INTERCEPT[organ] + patient_risk + W_SENSITIVITY * np.log(sensitivity)
         + W_HOTSPOT * (signals["hotspot_index"] - HOTSPOT_REF) / HOTSPOT_SCALE
         + W_DOSE * np.log(max(signals["mean_bed_gy"], 1e-3) / DOSE_REF_BED_GY[organ])
         + np.log(max(1.0 - np.exp(-signals["mean_bed_gy"] / DOSE_GATE_BED_GY), 1e-9)))
    p = 1.0 / (1.0 + np.exp(-z))
    u, noise, lag = rng.random(), rng.logistic(), int(rng.integers(ONSET_LAG_FRACTIONS[0], ONSET_LAG_FRACTIONS[1] + 1))
    if u >= p:
        return {"grade": 0, "onset_fraction": None, "probability": float(p), "logit": float(z)}
    severity = z + noise
    grade = 1 + int(severity > GRADE2_AT) + int(severity > GRADE3_AT)
    fractions = len(signals["injury"])
    onset = min(pet_crossing(signals["injury"]) + onset_lag(lag, fractions), fractions + 1)
    return {"grade": grade, "onset_fraction": onset, "probability": float(p), "logit": float(z)}


def onset_lag(lag: int, fractions: int) -> int:
    """The drawn lag (ONSET_LAG_FRACTIONS, for the reference course) in fractions of a course of
    `fractions`: unchanged up to ONSET_LAG_REFERENCE_FRACTIONS, proportionally longer beyond."""
    if fractions <= ONSET_LAG_REFERENCE_FRACTIONS:
        return int(lag)
    return int(round(lag * fractions / ONSET_LAG_REFERENCE_FRACTIONS))


def pet_crossing(injury) -> int:
    """The first fraction k after which the organ's inflammation raises its mean SUV by ONSET_PET_RISE
    (seen on the PET of fraction k + 1); K when it never does (a late reaction)."""
    return next((k + 1 for k, v in enumerate(injury) if PET_GAIN * v >= ONSET_PET_RISE), len(injury))


def parameters(fractions: int = ONSET_LAG_REFERENCE_FRACTIONS) -> dict:
    """Every parameter of the hidden model (recorded in ground_truth.json). The course-length rule of the
    onset lag is added for courses longer than the reference, so the files of reference-length cohorts
    stay byte-identical to earlier versions."""
    names = ("ORGANS", "RADIOSENSITIVITY_SIGMA", "INFLAMMATION_BED_GY", "PET_GAIN", "HOTSPOT_SIGMA_MM",
             "HOTSPOT_FLOOR_GY", "HOTSPOT_FLOOR_SHARE", "HOTSPOT_VOXEL_MM",
             "INTERCEPT", "PATIENT_RISK_SD", "W_DOSE", "DOSE_REF_BED_GY", "DOSE_GATE_BED_GY",
             "W_HOTSPOT", "HOTSPOT_REF", "HOTSPOT_SCALE",
             "W_SENSITIVITY", "GRADE2_AT", "GRADE3_AT", "ONSET_PET_RISE", "ONSET_LAG_FRACTIONS", "CT_GAIN_HU")
    g = globals()
    out = {n.lower(): g[n] for n in names}
    if int(fractions) > ONSET_LAG_REFERENCE_FRACTIONS:
        out["onset_lag_reference_fractions"] = ONSET_LAG_REFERENCE_FRACTIONS
        out["onset_lag_fractions_of_this_course"] = [onset_lag(v, fractions) for v in ONSET_LAG_FRACTIONS]
    return out
