"""THE HIDDEN TOXICITY MODEL of the synthetic cohort: every parameter of it is in this file.

For each organ at risk (SpinalCord, Heart, Esophagus) of a patient:
  1. radiosensitivity  s ~ LogNormal(0, RADIOSENSITIVITY_SIGMA)      (hidden, per patient and organ)
  2. inflammation after fraction k, per voxel:  I_k = s * (1 - exp(-BED_k / INFLAMMATION_BED_GY[organ]))
     with BED_k the cumulative BED (organ alpha/beta from Resources/organs.yaml). The PET of fraction k
     is taken before that day's beam, so it shows I_(k-1): SUV = baseline * (1 + PET_GAIN * I).
  3. signals: dose      = gEUD of the cumulative EQD2 over the course (organ n; what an LKB model sees)
                          and the organ's mean cumulative BED
              texture   = hot-spot texture: RMS in the organ of (BED - local mean) / (local mean + floor),
                          local mean a Gaussian of TEXTURE_SIGMA_MM (hot spots that a DVH averages away)
              pet_rise  = PET_GAIN * mean I_(K-1) (relative rise of the organ's mean SUV, last vs first PET)
  4. logit P(grade >= 1) = INTERCEPT + W_SENSITIVITY * ln(s)
                           + W_TEXTURE * (texture - TEXTURE_REF) / TEXTURE_SCALE
                           + W_DOSE * ln(gEUD / DOSE_REF_GY[organ])
                           + ln(1 - exp(-mean BED / DOSE_GATE_BED_GY))   (no dose, no toxicity)
  5. grade: toxic with that probability; severity = logit + logistic noise gives grade 1, 2 (> GRADE2_AT)
     or 3 (> GRADE3_AT).
  6. onset: the first fraction k at which the injury s * mean(1 - exp(-BED_k / ...)) reaches ONSET_SHARE
     of its end-of-course value, plus a lag of 1 or 2 fractions; K + 1 means after the course.
The weights make the radiosensitivity (seen only in the PET trajectory) and the texture carry most of the
information, so a mean-dose model alone reaches a moderate AUC (about 0.65-0.7 on 40 patients, see
docs/synthetic_cohort.md) and the toxic rate is about 40 %.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from COMPASSLib.resources import alpha_beta, geud_n

ORGANS = ("SpinalCord", "Heart", "Esophagus")

RADIOSENSITIVITY_SIGMA = 0.9
INFLAMMATION_BED_GY = {"SpinalCord": 4.0, "Heart": 5.0, "Esophagus": 8.0}
PET_GAIN = 0.3
TEXTURE_SIGMA_MM = 6.0
TEXTURE_FLOOR_GY = 1.0
TEXTURE_VOXEL_MM = 6.0

INTERCEPT = -0.2
W_DOSE = 0.2
DOSE_GATE_BED_GY = 0.2
DOSE_REF_GY = {"SpinalCord": 8.0, "Heart": 10.0, "Esophagus": 15.0}
W_TEXTURE = 0.8
TEXTURE_REF = 0.16
TEXTURE_SCALE = 0.05
W_SENSITIVITY = 2.2
GRADE2_AT = 1.5
GRADE3_AT = 3.0
ONSET_SHARE = 0.7


def draw_radiosensitivity(rng: np.random.Generator) -> dict:
    return {o: float(rng.lognormal(0.0, RADIOSENSITIVITY_SIGMA)) for o in ORGANS}


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


def texture(bed_gy: np.ndarray, mask: np.ndarray, spacing_mm) -> float:
    """Hot-spot texture: RMS inside the organ of the BED's relative deviation from its local mean
    (Gaussian, TEXTURE_SIGMA_MM), (BED - local) / (local + TEXTURE_FLOOR_GY). Relative, so it measures how
    concentrated the dose is in small hot spots whatever the dose level; the floor keeps voxels with
    almost no dose from counting. Measured on a TEXTURE_VOXEL_MM grid (block means) so that the small
    and full grids give the same value for the same patient. Dimensionless."""
    factors = [max(1, int(round(TEXTURE_VOXEL_MM / s))) for s in (spacing_mm[2], spacing_mm[1], spacing_mm[0])]
    bed, share = _block_mean(bed_gy, factors), _block_mean(mask.astype(np.float64), factors)
    inside = share >= 0.5
    if not inside.any():          # an organ thinner than a coarse voxel: keep every voxel it touches
        inside = share > 0
    sigma = [TEXTURE_SIGMA_MM / (s * f) for s, f in zip((spacing_mm[2], spacing_mm[1], spacing_mm[0]), factors)]
    local = gaussian_filter(bed, sigma, mode="nearest")[inside]
    return float(np.sqrt(np.mean(((bed[inside] - local) / (local + TEXTURE_FLOOR_GY)) ** 2)))


def _block_mean(array: np.ndarray, factors) -> np.ndarray:
    """Mean over blocks of factors (z, y, x) voxels (the remainder at the far edges is dropped)."""
    fz, fy, fx = factors
    nz, ny, nx = (n // f for n, f in zip(array.shape, factors))
    a = array[: nz * fz, : ny * fy, : nx * fx]
    return a.reshape(nz, fz, ny, fy, nx, fx).mean(axis=(1, 3, 5))


def geud(values: np.ndarray, n: float) -> float:
    return float(np.mean(values ** (1.0 / n)) ** n)


def organ_signals(fraction_doses, mask: np.ndarray, organ: str, sensitivity: float, spacing_mm) -> dict:
    """The signals of one organ from its per-fraction physical dose maps (Gy) and its mask."""
    ab = alpha_beta(organ)
    beds = cumulative_bed([d[mask] for d in fraction_doses], ab)
    eqd2 = beds[-1] / (1.0 + 2.0 / ab)
    final_bed = np.zeros(mask.shape)
    final_bed[mask] = beds[-1]
    # Roughness is measured on the whole BED map so the organ's edges see their true neighbourhood.
    full_bed = cumulative_bed(fraction_doses, ab)[-1]
    injury = [float(inflammation(b, organ, sensitivity).mean()) for b in beds]
    k = len(fraction_doses)
    return {
        "mean_bed_gy": float(beds[-1].mean()),
        "mean_dose_gy": float(sum(d[mask].mean() for d in fraction_doses)),
        "geud_eqd2_gy": geud(np.maximum(eqd2, 1e-6), geud_n(organ)),
        "texture": texture(full_bed, mask, spacing_mm),
        "pet_rise": PET_GAIN * (injury[k - 2] if k >= 2 else 0.0),
        "injury": injury,
    }


def draw_outcome(rng: np.random.Generator, organ: str, sensitivity: float, signals: dict) -> dict:
    """Grade (0-3), onset fraction (None when grade 0) and the probability the model gave."""
    z = (INTERCEPT + W_SENSITIVITY * np.log(sensitivity)
         + W_TEXTURE * (signals["texture"] - TEXTURE_REF) / TEXTURE_SCALE
         + W_DOSE * np.log(max(signals["geud_eqd2_gy"], 1e-3) / DOSE_REF_GY[organ])
         + np.log(max(1.0 - np.exp(-signals["mean_bed_gy"] / DOSE_GATE_BED_GY), 1e-9)))
    p = 1.0 / (1.0 + np.exp(-z))
    u, noise, lag = rng.random(), rng.logistic(), int(rng.integers(1, 3))
    if u >= p:
        return {"grade": 0, "onset_fraction": None, "probability": float(p), "logit": float(z)}
    severity = z + noise
    grade = 1 + int(severity > GRADE2_AT) + int(severity > GRADE3_AT)
    injury = signals["injury"]
    k_cross = next(i + 1 for i, v in enumerate(injury) if v >= ONSET_SHARE * injury[-1])
    onset = min(k_cross + lag, len(injury) + 1)
    return {"grade": grade, "onset_fraction": onset, "probability": float(p), "logit": float(z)}


def parameters() -> dict:
    """Every parameter of the hidden model (recorded in ground_truth.json)."""
    names = ("ORGANS", "RADIOSENSITIVITY_SIGMA", "INFLAMMATION_BED_GY", "PET_GAIN", "TEXTURE_SIGMA_MM",
             "TEXTURE_FLOOR_GY", "TEXTURE_VOXEL_MM",
             "INTERCEPT", "W_DOSE", "DOSE_REF_GY", "DOSE_GATE_BED_GY", "W_TEXTURE", "TEXTURE_REF", "TEXTURE_SCALE",
             "W_SENSITIVITY", "GRADE2_AT", "GRADE3_AT", "ONSET_SHARE")
    g = globals()
    return {n.lower(): g[n] for n in names}
