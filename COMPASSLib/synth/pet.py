"""FDG-PET of the synthetic patients: the SUV (body weight) image the generator intends, and the
acquisition parameters that turn it into the activity concentration (Bq/ml) a scanner stores.

SUVbw = C(t_scan) * weight_g / (A_inj * 2^(-(t_scan - t_inj) / T_half)); the image is decay-corrected to
the series start (DecayCorrection START), so the writer stores C = SUV * A_inj * decay / weight_g."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from COMPASSLib.synth import toxicity
from COMPASSLib.synth.grid import block_mean, pet_factor

F18_HALF_LIFE_S = 6586.2
PSF_FWHM_MM = 6.0            # scanner resolution
NOISE_RELATIVE = 0.04        # multiplicative noise per PET voxel

# Baseline SUV of the tissue classes of anatomy.tissue_classes (painting order, later wins).
SUV = {"soft": 0.8, "fat": 0.35, "lung": 0.45, "heart": None, "esophagus": 1.5, "bone": 1.6,
       "cord": 1.3, "gtv": None}
ORGAN_CLASS = {"SpinalCord": "cord", "Heart": "heart", "Esophagus": "esophagus"}


@dataclass
class PetParams:
    weight_kg: float
    injected_bq: float
    uptake_s: float          # injection to scan start
    heart_suv: float         # myocardial uptake varies a lot between patients
    tumour_suv: float        # tumour SUV at the first fraction
    tumour_response: float   # relative loss of tumour SUV over the course

    def to_dict(self) -> dict:
        return asdict(self)

    def decay_factor(self) -> float:
        return float(2.0 ** (-self.uptake_s / F18_HALF_LIFE_S))

    def bqml_per_suv(self) -> float:
        """Activity concentration (Bq/ml) of one SUV unit at scan start (1 ml of tissue = 1 g)."""
        return self.injected_bq * self.decay_factor() / (self.weight_kg * 1000.0)


def draw_pet(rng: np.random.Generator, body_a_mm: float, body_b_mm: float) -> PetParams:
    # Weight follows the body's cross-section, so bigger phantoms are heavier patients.
    weight = float(np.clip(70.0 * (body_a_mm * body_b_mm) / (165.0 * 114.0) + rng.normal(0, 5), 45, 130))
    return PetParams(weight_kg=round(weight, 1), injected_bq=float(round(3.7e6 * weight * rng.uniform(0.9, 1.1), -4)),
                     uptake_s=float(rng.integers(50, 75) * 60), heart_suv=float(rng.uniform(1.6, 4.0)),
                     tumour_suv=float(rng.uniform(6.0, 15.0)), tumour_response=float(rng.uniform(0.1, 0.6)))


def suv_image(sim, classes: dict, pet: PetParams, fraction: int, rng: np.random.Generator) -> np.ndarray:
    """The SUV image (float32) of `fraction` on the PET grid: tissue baselines, inflamed organs at risk
    (cumulative BED up to the day before), the responding tumour, scanner blur and noise."""
    grid = sim.grid
    k_total = sim.response_fractions or sim.fractions
    suv = np.zeros(grid.shape, dtype=np.float64)
    for name, m in classes.items():
        if name == "heart":
            suv[m] = pet.heart_suv
        elif name == "gtv":
            progress = min((fraction - 1) / max(k_total - 1, 1), 1.0)
            suv[m] = pet.tumour_suv * (1.0 - pet.tumour_response * progress)
        else:
            suv[m] = SUV[name]
    if fraction >= 2 and sim.readout == "pet":
        for organ in toxicity.ORGANS:
            mask = classes[ORGAN_CLASS[organ]]
            injury = toxicity.inflammation_before(sim.doses_gy, mask, organ, sim.sensitivity[organ], fraction)
            suv[mask] *= 1.0 + toxicity.PET_GAIN * injury
    sigma = [PSF_FWHM_MM / 2.3548 / s for s in (grid.spacing_mm[2], grid.spacing_mm[1], grid.spacing_mm[0])]
    suv = block_mean(gaussian_filter(suv, sigma, mode="constant"), pet_factor(sim.size))
    suv *= 1.0 + NOISE_RELATIVE * rng.standard_normal(suv.shape)
    return np.maximum(suv, 0.0).astype(np.float32)
