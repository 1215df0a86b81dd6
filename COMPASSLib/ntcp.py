"""Lyman-Kutcher-Burman NTCP, the classical baseline the twin is compared against.

    NTCP = Phi(t),  t = (gEUD - TD50) / (m TD50),  gEUD = (mean over voxels of D^(1/n))^n

D is the organ's EQD2 (the published parameters were fitted on ~2 Gy fractions). Parameter sets with
their citation and end point live in Resources/ntcp_lkb.yaml.
"""
from __future__ import annotations

import dataclasses
import functools
import math

from COMPASSLib import dose as _dose
from COMPASSLib.errors import DoseError, InputError


@dataclasses.dataclass(frozen=True)
class LKBParameters:
    name: str
    organ: str  # canonical organ (Resources/organs.yaml)
    td50_gy: float
    m: float
    n: float
    endpoint: str
    citation: str

    def ntcp(self, eqd2_values_or_dvh) -> float:
        return lkb(eqd2_values_or_dvh, self.td50_gy, self.m, self.n)


def _check(td50: float, m: float, n: float) -> None:
    for label, v in (("TD50", td50), ("m", m), ("n", n)):
        if not (isinstance(v, (int, float)) and math.isfinite(v)):
            raise DoseError(f"LKB parameter {label} must be a finite number (got {v!r})")
    if td50 <= 0 or m <= 0 or n <= 0:
        raise DoseError(f"LKB parameters need TD50 > 0, m > 0, n > 0 (got TD50={td50}, m={m}, n={n})")


def lkb_from_geud(geud_gy: float, td50: float, m: float) -> float:
    """NTCP for a given gEUD: the standard normal CDF of (gEUD - TD50) / (m TD50)."""
    t = (float(geud_gy) - td50) / (m * td50)
    return 0.5 * math.erfc(-t / math.sqrt(2.0))


def lkb(eqd2_values_or_dvh, td50: float, m: float, n: float) -> float:
    """LKB NTCP of an organ from its EQD2 voxel values (array/image of the organ's voxels) or its
    `dose.DVH` (of EQD2), with gEUD exponent n."""
    _check(td50, m, n)
    if isinstance(eqd2_values_or_dvh, _dose.DVH):
        g = eqd2_values_or_dvh.geud(n)
    else:
        g = _dose.geud(eqd2_values_or_dvh, n)
    return lkb_from_geud(g, td50, m)


@functools.lru_cache(maxsize=None)
def _load_sets() -> tuple:
    from COMPASSLib import resources

    table = resources.load_yaml("ntcp_lkb.yaml").get("parameter_sets") or {}
    out = []
    for name, p in table.items():
        try:
            params = LKBParameters(name=name, organ=p["organ"], td50_gy=float(p["td50_gy"]), m=float(p["m"]),
                                   n=float(p["n"]), endpoint=p["endpoint"], citation=p["citation"])
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"NTCP parameter set {name!r} is incomplete or not numeric ({e})",
                             file=resources.resource_path("ntcp_lkb.yaml")) from None
        _check(params.td50_gy, params.m, params.n)
        out.append(params)
    return tuple(out)


def parameter_sets() -> dict:
    """Published LKB parameter sets: name -> LKBParameters (Resources/ntcp_lkb.yaml, in file order)."""
    return {p.name: p for p in _load_sets()}


def sets_for_organ(organ: str) -> list:
    """The parameter sets that apply to an organ (canonical name or any synonym)."""
    from COMPASSLib import resources

    canonical = resources.canonical_organ(organ) or organ
    return [p for p in _load_sets() if p.organ == canonical]
