"""Beam model of the synthetic plans: coplanar photon beams around the GTV, each with exponential
attenuation along its path through the body, an erf penumbra, a low-dose scatter tail and a modulated
fluence, summed and normalised so the GTV gets its prescription.

Per fraction the aperture follows the (shrinking) GTV, as in biology-guided delivery, and the patient is
set up with an error of a few mm that the delivery does not know about, so each fraction's delivered dose
differs from the plan and from the other fractions."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import erf

from COMPASSLib.synth.anatomy import AnatomyParams
from COMPASSLib.synth.grid import Grid

MU_PER_MM = 0.0045        # effective attenuation of a 6 MV beam in water (about 4.5 %/cm past d_max)
PENUMBRA_SIGMA_MM = 3.5   # 80-20 % penumbra of about 6 mm
SCATTER_FRACTION = 0.06   # out-of-field dose just outside the aperture, relative to the field
SCATTER_LENGTH_MM = 25.0
MARGIN_MM = 5.0           # aperture margin around the GTV
SETUP_SIGMA_MM = 2.0      # random setup error per axis and fraction
NORMALISE_PERCENTILE = 5  # the prescription covers 95 % of the GTV (D95 = prescription)

# Fractionation. The course prescriptions are SBRT totals (50, 55 or 60 Gy in 5 fractions); with K
# fractions the same total is split into K, which stays a clinical hypofractionated schedule down to
# about 2 Gy per fraction (e.g. 55 Gy in 20). Longer courses are conventional: the dose per fraction stops
# at the conventional 2.0, 2.1 or 2.2 Gy that the SBRT total maps to, and the total grows with K
# (60, 63, 66 Gy in 30 fractions, the range of conventional lung RT). The two rules meet where the SBRT
# total divided by K reaches the conventional dose (K = 25, 26.2, 27.3), so the prescription is continuous
# in K, and every course up to 24 fractions (the 5-fraction default included) is unchanged.
SBRT_TOTALS_GY = (50.0, 55.0, 60.0)
CONVENTIONAL_GY_PER_FRACTION = {50.0: 2.0, 55.0: 2.1, 60.0: 2.2}
# The GTV shrinks by up to 8 % of its radius per fraction in a 5-fraction course; longer courses spread the
# same total shrinkage (up to 32 %) over their fractions, so a 30-fraction GTV never vanishes.
SHRINK_REFERENCE_FRACTIONS = 5


@dataclass
class PlanParams:
    prescription_gy: float     # course prescription (D95 of the GTV)
    fractions: int
    angles_deg: list           # gantry angles: 0 = source anterior, 90 = source at the patient's left
    weights: list              # relative beam weights
    modulation: float          # fluence modulation amplitude (hot spots); varies between plans
    fluence_waves: list        # per beam: [(k_lateral 1/mm, k_z 1/mm, phase), ...]
    setup_shifts_mm: list      # per fraction (dx, dy, dz)
    shrink_per_fraction: float # relative GTV radius lost per fraction

    def to_dict(self) -> dict:
        return asdict(self)


def draw_plan(rng: np.random.Generator, anatomy: AnatomyParams, fractions: int) -> PlanParams:
    n_beams = int(rng.integers(5, 10))
    gx, gy = anatomy.gtv_c_mm[0], anatomy.gtv_c_mm[1]
    # An arc of beams centred on the tumour's side of the body (gantry 0 = from anterior, 90 = from
    # the patient's left in LPS), as SBRT plans avoid traversing the whole chest.
    side = np.degrees(np.arctan2(gx, -gy if abs(gy) > 1 else -1.0))
    span = rng.uniform(160, 240)
    angles = side + np.linspace(-span / 2, span / 2, n_beams) + rng.uniform(-8, 8, n_beams)
    waves = []
    for _ in range(n_beams):
        waves.append([(float(2 * np.pi / rng.uniform(12, 35)), float(2 * np.pi / rng.uniform(12, 35)),
                       float(rng.uniform(0, 2 * np.pi))) for _ in range(3)])
    sbrt_total = float(rng.choice(list(SBRT_TOTALS_GY)))
    return PlanParams(
        prescription_gy=course_prescription_gy(sbrt_total, fractions), fractions=fractions,
        angles_deg=[float(a % 360) for a in angles], weights=[float(w) for w in rng.uniform(0.8, 1.2, n_beams)],
        modulation=float(rng.uniform(0.0, 0.45)), fluence_waves=waves,
        setup_shifts_mm=[[float(v) for v in rng.normal(0, SETUP_SIGMA_MM, 3)] for _ in range(fractions)],
        shrink_per_fraction=float(rng.uniform(0.0, 0.08)) * _shrink_spread(fractions))


def course_prescription_gy(sbrt_total_gy: float, fractions: int) -> float:
    """The course's GTV D95 prescription: the SBRT total split into `fractions`, or, when that would give
    less than the conventional dose per fraction, that dose times `fractions` (see SBRT_TOTALS_GY)."""
    conventional = round(CONVENTIONAL_GY_PER_FRACTION[sbrt_total_gy] * int(fractions), 6)
    return max(sbrt_total_gy, conventional)


def _shrink_spread(fractions: int) -> float:
    """Factor on the per-fraction GTV shrinkage: 1 up to the reference course, then the reference
    course's total shrinkage spread over the longer course."""
    if fractions <= SHRINK_REFERENCE_FRACTIONS:
        return 1.0
    return (SHRINK_REFERENCE_FRACTIONS - 1) / (fractions - 1)


def gtv_radius(anatomy: AnatomyParams, plan: PlanParams, fraction: int) -> float:
    """GTV radius on the CT of `fraction` (1-based); 0 = planning."""
    return anatomy.gtv_r_mm * (1.0 - plan.shrink_per_fraction * max(fraction - 1, 0))


def _body_depth(x, y, dx, dy, a, b):
    """Path length (mm) from where a ray travelling along (dx, dy) enters the elliptic body to (x, y).
    Solves |(p - t d)/axes| = 1 for the larger t: the entry point behind p."""
    A = (dx / a) ** 2 + (dy / b) ** 2
    B = -2 * ((x * dx) / a ** 2 + (y * dy) / b ** 2)
    C = (x / a) ** 2 + (y / b) ** 2 - 1.0
    disc = np.maximum(B * B - 4 * A * C, 0.0)
    return np.maximum((-B + np.sqrt(disc)) / (2 * A), 0.0)


def _edge_profile(offset, half_width):
    """Field profile across an edge: 1 inside, 0.5 at the edge, erf penumbra, exponential scatter tail."""
    inside = 0.5 * (1.0 + erf((half_width - np.abs(offset)) / (np.sqrt(2) * PENUMBRA_SIGMA_MM)))
    tail = SCATTER_FRACTION * np.exp(-np.maximum(np.abs(offset) - half_width, 0.0) / SCATTER_LENGTH_MM)
    return np.maximum(inside, tail)


def beam_dose(points_mm: np.ndarray, anatomy: AnatomyParams, plan: PlanParams, iso_mm, half_width_mm,
              shift_mm=(0.0, 0.0, 0.0)):
    """Unnormalised dose at anatomical `points_mm` (N x 3, LPS) from all beams aimed at `iso_mm`.
    A setup error `shift_mm` moves the patient (body outline included) by that much in the room, so
    the anatomical point p meets the beams at p + shift while its depth below the skin is unchanged."""
    x, y = points_mm[:, 0], points_mm[:, 1]
    rx, ry, rz = (points_mm + np.asarray(shift_mm) - np.asarray(iso_mm)).T
    total = np.zeros(len(points_mm), dtype=np.float64)
    for angle, weight, waves in zip(plan.angles_deg, plan.weights, plan.fluence_waves):
        t = np.radians(angle)
        dx, dy = -np.sin(t), np.cos(t)              # travels from the source at (sin t, -cos t) to the iso
        lateral = rx * dy - ry * dx                 # in-plane offset across the beam
        profile = _edge_profile(lateral, half_width_mm) * _edge_profile(rz, half_width_mm)
        fluence = 1.0 + plan.modulation * sum(np.cos(kl * lateral + kz * rz + ph) for kl, kz, ph in waves) / 3
        depth = _body_depth(x, y, dx, dy, anatomy.body_a_mm, anatomy.body_b_mm)
        total += weight * profile * fluence * np.exp(-MU_PER_MM * depth)
    return total


def fraction_dose(grid: Grid, body: np.ndarray, gtv: np.ndarray, anatomy: AnatomyParams, plan: PlanParams,
                  fraction: int, planned: bool = False) -> np.ndarray:
    """Dose (Gy, float64, (z, y, x)) delivered in `fraction`: normalised on the day's GTV without the
    setup error, then delivered with it. `planned=True` gives the dose without setup error."""
    X, Y, Z = grid.mesh()
    idx = np.nonzero(body)
    points = np.stack([X[0, 0, idx[2]], Y[0, idx[1], 0], Z[idx[0], 0, 0]], axis=1)
    half_width = gtv_radius(anatomy, plan, fraction) + MARGIN_MM
    iso = np.asarray(anatomy.gtv_c_mm, dtype=float)
    gidx = np.nonzero(gtv)
    gpoints = np.stack([X[0, 0, gidx[2]], Y[0, gidx[1], 0], Z[gidx[0], 0, 0]], axis=1)
    d95 = np.percentile(beam_dose(gpoints, anatomy, plan, iso, half_width), NORMALISE_PERCENTILE)
    scale = plan.prescription_gy / plan.fractions / d95
    shift = np.zeros(3) if planned else np.asarray(plan.setup_shifts_mm[fraction - 1])
    dose = np.zeros(grid.shape, dtype=np.float64)
    dose[idx] = scale * beam_dose(points, anatomy, plan, iso, half_width, shift)
    return dose
