"""Per-voxel first-order and GLCM features of masked cubic kernels, vectorised in PyTorch.

Private to `texture_maps`. Everything works on one chunk of kernel centres at a time: the caller
gathers, for every centre, the (2r+1)^3 kernel values, grey levels and ROI flags into (V, S) tensors
(S kernel positions in C order), and these functions return a dict feature name -> (V,) tensor.

The definitions follow pyradiomics 3.0.1 (firstorder.py, glcm.py, cmatrices.c) exactly, but the
GLCM is never built as an Ng x Ng matrix. Per kernel and direction:
* the moment features (contrast, averages, variances, cluster moments, inverse differences) are sums
  over the pairs of a function of the difference |i - j| or of the sum i + j: two short histograms
  (as long as the kernel's span of grey levels) summed against tables of those functions; the
  central moments from whole-number power sums in int64 (exact, one rounding);
* the joint-cell features (entropy, energy, maximum) from a dense histogram of the level pairs
  (kernels spanning few levels), else from the distinct pairs counted by a compiled loop on the CPU
  (`_glcm_cpu`, numba) or by one sort of the one-way pair codes (CUDA, or without numba);
* the marginals (Imc1, Imc2, MCC) counted per level minus the kernel's lowest level; HXY1 and HXY2
  follow from HX;
* MCC = 1 where the pair graph is surely disconnected or a tree (counting rules), else from the
  eigenvalues of the small matrix of the levels present: on the CPU by a compiled loop over the
  matrices (`_glcm_cpu`, numba); on CUDA or without numba closed forms up to 4 levels (the known top
  eigenvector deflated for 4) and LAPACK in batches of equal size beyond.
Entropies are log2(total) - sum c log2 c / total from a table over whole-number counts. First
order sorts each kernel's ROI-wide value ranks (int32) once for the percentiles, and counts its
grey levels over the kernel's own span (one scatter) for Entropy and Uniformity. The cost grows
with the pairs in a kernel and the grey levels a kernel spans, not with the number of grey levels
in the ROI.
"""
from __future__ import annotations

import functools
import itertools
import math
from typing import NamedTuple

import numpy as np
import torch

from . import _glcm_cpu

# numpy.spacing(1): the epsilon pyradiomics adds inside every log2.
EPS = float(np.spacing(1))
# Memory for the per-direction difference and sum histograms of one slice of kernel centres.
_HISTOGRAM_BYTES = 256 * 2 ** 20
# Bound on the int64 terms of the exact central moments (int64 overflows at 2^63).
_INT64_MOMENT_BOUND = 2 ** 63
# How close (in units of eps x entropy) HXY2 and HXY must be to count as equal for Imc2.
_SAME_ENTROPY_ULPS = 64

FIRSTORDER_FEATURES = (
    "Energy", "TotalEnergy", "Entropy", "Minimum", "10Percentile", "90Percentile", "Maximum", "Mean",
    "Median", "InterquartileRange", "Range", "MeanAbsoluteDeviation", "RobustMeanAbsoluteDeviation",
    "RootMeanSquared", "Skewness", "Kurtosis", "Variance", "Uniformity")

GLCM_FEATURES = (
    "Autocorrelation", "JointAverage", "ClusterProminence", "ClusterShade", "ClusterTendency", "Contrast",
    "Correlation", "DifferenceAverage", "DifferenceEntropy", "DifferenceVariance", "JointEnergy",
    "JointEntropy", "Imc1", "Imc2", "Idm", "MCC", "Idmn", "Id", "Idn", "InverseVariance",
    "MaximumProbability", "SumAverage", "SumEntropy", "SumSquares")


@functools.lru_cache(maxsize=8)
def kernel_offsets(radius: int) -> np.ndarray:
    """(S, 3) offsets (dz, dy, dx) of a cube of half-width `radius`, in C order (cached: read only)."""
    r = range(-radius, radius + 1)
    return np.array(list(itertools.product(r, r, r)), dtype=np.int64)


def glcm_directions() -> np.ndarray:
    """The 13 one-way unit directions of 3D (distance 1, infinity norm); the opposite way is covered
    by making each matrix symmetric, as pyradiomics does by default (symmetricalGLCM)."""
    dirs = [d for d in itertools.product((-1, 0, 1), repeat=3) if d > (0, 0, 0)]
    return np.array(dirs, dtype=np.int64)


@functools.lru_cache(maxsize=8)
def pair_tables(radius: int):
    """For each direction, the kernel positions (a, b) with b = a + direction inside the cube,
    grouped by the number of pairs (axis, face-diagonal and body-diagonal directions of a cube each
    have the same count), so that no table needs padding.

    Returns a tuple of (first, second) int64 arrays of shape (directions in group, pairs); cached
    (one Python loop per radius per process), so read only."""
    offs = kernel_offsets(radius)
    index = {tuple(o): k for k, o in enumerate(offs)}
    groups: dict[int, list] = {}
    for d in glcm_directions():
        pairs = [(k, index[tuple(o + d)]) for k, o in enumerate(offs) if tuple(o + d) in index]
        groups.setdefault(len(pairs), []).append(pairs)
    tables = []
    for _, dirs in sorted(groups.items(), reverse=True):
        arr = np.array(dirs, dtype=np.int64)              # (directions, pairs, 2)
        tables.append((arr[..., 0].copy(), arr[..., 1].copy()))
    return tuple(tables)


# --------------------------------------------------------------------------- helpers on sorted runs

def _run_counts(sorted_codes: torch.Tensor, valid_sorted: torch.Tensor):
    """For rows of sorted codes (invalid entries sorted to the end), the count of each run of equal
    codes: returns (counts_by_run, run_id) with counts_by_run[..., k] the length of the k-th run
    (0 for unused k) and run_id the run of every entry."""
    start = torch.ones_like(valid_sorted)
    start[..., 1:] = sorted_codes[..., 1:] != sorted_codes[..., :-1]
    start &= valid_sorted
    run_id = torch.cumsum(start, -1) - 1
    run_id.clamp_(min=0)
    # runs fill the leading slots: keep only as many as the longest row has (fewer logs later)
    runs = int(run_id.max().item()) + 1 if run_id.numel() else 1
    counts = torch.zeros(sorted_codes.shape[:-1] + (runs,), dtype=torch.int64, device=sorted_codes.device)
    counts.scatter_add_(-1, run_id, valid_sorted.to(torch.int64))
    return counts, run_id


@functools.lru_cache(maxsize=16)
def _clog_table(max_count: int, dtype, device) -> torch.Tensor:
    """c log2 c for whole c in 0..max_count (0 at c = 0)."""
    c = torch.arange(max_count + 1, dtype=dtype, device=device)
    return torch.where(c > 0, c * torch.log2(c.clamp(min=1)), 0.0)


def _entropy_of_counts(counts: torch.Tensor, total: torch.Tensor, max_total: int, dtype,
                       weights: torch.Tensor | None = None) -> torch.Tensor:
    """-sum p log2(p + eps), p = count / total (pyradiomics' entropy; zero counts give 0), for whole
    counts up to max_total that sum to `total` (with `weights`: each count stands for that many
    cells). Computed as log2(total) - sum c log2 c / total from a table of c log2 c (one lookup
    per count, no log): the eps inside pyradiomics' log adds (cells present) x eps / ln 2 < 1e-14,
    far below the tolerance of the equality tests; 0 where total is 0."""
    table = _clog_table(int(max_total), dtype, counts.device)
    terms = table.index_select(0, counts.reshape(-1)).reshape(counts.shape)
    if weights is not None:
        terms = terms * weights
    t = total.to(dtype)
    h = torch.log2(t.clamp(min=1)) - terms.sum(-1) / t.clamp(min=1)
    return torch.where(total > 0, h, 0.0)


def _masked_sort(codes: torch.Tensor, valid: torch.Tensor, sentinel: int):
    """Sort codes with invalid entries pushed to the end."""
    keyed = torch.where(valid, codes, torch.full_like(codes, sentinel))
    sorted_codes, perm = torch.sort(keyed, dim=-1)
    return sorted_codes, sorted_codes != sentinel, perm


# Features that can be NaN in a direction that has pairs (pyradiomics' numpy.nanmean skips those).
_NAN_PER_DIRECTION = frozenset({"Imc2"})


def _mean_over_directions(groups: list, angle_ok: list) -> dict:
    """Mean of each feature over the directions that have pairs in each kernel (pyradiomics drops
    empty ones; a NaN of a direction, e.g. Imc2, is skipped as numpy.nanmean); NaN where a kernel
    has no pairs at all. `groups`: per direction group {name: (V, directions)}; `angle_ok`: per
    group (V, directions) masks. Feature by feature, without broadcasting (much faster on CPU)."""
    dtype = next(iter(groups[0].values())).dtype
    count = sum(ok.sum(-1) for ok in angle_ok)
    out = {}
    for name in groups[0]:
        if name in _NAN_PER_DIRECTION:
            oks = [ok & ~torch.isnan(g[name]) for g, ok in zip(groups, angle_ok)]
            cnt = sum(ok.sum(-1) for ok in oks)
        else:
            oks, cnt = angle_ok, count
        num = sum(torch.where(ok, g[name], 0.0).sum(-1) for g, ok in zip(groups, oks))
        out[name] = torch.where(cnt > 0, num / cnt.clamp(min=1).to(dtype), float("nan"))
    return out


# --------------------------------------------------------------------------- first order

def _percentiles(sorted_vals: torch.Tensor, n: torch.Tensor, qs) -> torch.Tensor:
    """numpy.nanpercentile (method 'linear') at each q of `qs` of rows whose n valid values come
    first, sorted: (V, len(qs)), all in one gather."""
    q = torch.tensor([x / 100.0 for x in qs], dtype=sorted_vals.dtype, device=sorted_vals.device)
    pos = q * (n.to(sorted_vals.dtype) - 1).unsqueeze(-1)
    lo = torch.floor(pos).to(torch.int64).clamp(min=0)
    hi = torch.ceil(pos).to(torch.int64).clamp(min=0)
    ab = torch.gather(sorted_vals, -1, torch.cat([lo, hi], -1))
    a, b = ab[..., :len(qs)], ab[..., len(qs):]
    t = pos - lo.to(pos.dtype)
    diff = b - a
    # numpy's _lerp: a + d t, or b - d (1 - t) when t >= 0.5 (keeps the result monotone)
    return torch.where(t >= 0.5, b - diff * (1 - t), a + diff * t)


def firstorder(values, levels, inside, wanted, *, ranks, rank_values, voxel_array_shift=0.0,
               voxel_volume=1.0):
    """First-order features of each kernel: `values` (V, S) float image values, `levels` (V, S) int
    grey levels, `inside` (V, S) bool (kernel voxel in the ROI), `ranks` (V, S) int32: rank of each
    value among the ROI's distinct values `rank_values`. Same
    formulas as pyradiomics' firstorder.py in voxel-based mode (NaN-masked kernels, entropy on
    discretised levels)."""
    wanted = set(wanted)
    n = inside.sum(-1)
    out = _firstorder_moments(values, inside, n, wanted, voxel_array_shift=voxel_array_shift,
                              voxel_volume=voxel_volume)
    if _FIRSTORDER_HISTOGRAM & wanted:
        out.update(_firstorder_histogram(levels, inside, n, wanted, values.dtype))
    if _FIRSTORDER_SORTED & wanted:
        out.update(_firstorder_order_statistics(values, inside, n, wanted, ranks=ranks,
                                                rank_values=rank_values))
    return out


# First-order features from each kernel's grey-level histogram, and from its sorted values.
_FIRSTORDER_HISTOGRAM = frozenset({"Entropy", "Uniformity"})
_FIRSTORDER_SORTED = frozenset({"Minimum", "Maximum", "Range", "10Percentile", "90Percentile", "Median",
                                "InterquartileRange", "RobustMeanAbsoluteDeviation"})


def _firstorder_moments(values, inside, n, wanted, *, voxel_array_shift, voxel_volume) -> dict:
    """Mean, the energies and the central-moment features (those in `wanted`) of each kernel's
    `n` ROI values."""
    dtype = values.dtype
    zero = torch.zeros((), dtype=dtype, device=values.device)
    nf = n.to(dtype)
    out = {}
    mean = torch.where(inside, values, zero).sum(-1) / nf
    if "Mean" in wanted:
        out["Mean"] = mean
    if {"Energy", "TotalEnergy", "RootMeanSquared"} & wanted:
        shifted = torch.where(inside, values + voxel_array_shift, zero)
        energy = (shifted * shifted).sum(-1)
        if "Energy" in wanted:
            out["Energy"] = energy
        if "TotalEnergy" in wanted:
            out["TotalEnergy"] = energy * voxel_volume
        if "RootMeanSquared" in wanted:
            out["RootMeanSquared"] = torch.sqrt(energy / nf)
    if {"Variance", "Skewness", "Kurtosis", "MeanAbsoluteDeviation"} & wanted:
        dev = torch.where(inside, values - mean.unsqueeze(-1), zero)
        dev2 = dev * dev
        m2 = dev2.sum(-1) / nf
        if "Variance" in wanted:
            out["Variance"] = torch.sqrt(m2) ** 2  # numpy.nanstd(...) ** 2, as pyradiomics
        flat_safe = torch.where(m2 == 0, torch.ones_like(m2), m2)  # flat kernel: m3 = m4 = 0 -> 0
        if "Skewness" in wanted:
            out["Skewness"] = ((dev2 * dev).sum(-1) / nf) / flat_safe ** 1.5
        if "Kurtosis" in wanted:
            out["Kurtosis"] = ((dev2 * dev2).sum(-1) / nf) / flat_safe ** 2.0
        if "MeanAbsoluteDeviation" in wanted:
            out["MeanAbsoluteDeviation"] = dev.abs().sum(-1) / nf
    return out


def _firstorder_histogram(levels, inside, n, wanted, dtype) -> dict:
    """Entropy and Uniformity (those in `wanted`) of each kernel's grey levels."""
    out = {}
    # grey-level histogram of each kernel over its own span (level - kernel minimum: one
    # scatter; voxels outside the ROI clamp to 0 with weight 0)
    lmin = torch.where(inside, levels, torch.iinfo(levels.dtype).max).min(-1).values
    local = (levels - lmin.unsqueeze(-1)).clamp_(min=0)
    span = int(torch.where(inside, local, 0).max().item()) if local.numel() else 0
    counts = torch.zeros(local.shape[:-1] + (span + 1,), dtype=torch.int64, device=levels.device)
    counts.scatter_add_(-1, local, inside.to(torch.int64))
    if "Entropy" in wanted:
        out["Entropy"] = _entropy_of_counts(counts, n, levels.shape[-1], dtype)
    if "Uniformity" in wanted:
        p = counts.to(dtype) / n.to(dtype).unsqueeze(-1)
        out["Uniformity"] = (p * p).sum(-1)
    return out


def _firstorder_order_statistics(values, inside, n, wanted, *, ranks, rank_values) -> dict:
    """Minimum, maximum, range, percentiles and the robust mean absolute deviation (those in
    `wanted`) of each kernel's `n` ROI values."""
    dtype = values.dtype
    zero = torch.zeros((), dtype=dtype, device=values.device)
    out = {}
    # one sort of the values' ROI-wide ranks (int32 sorts faster than float64), values looked up
    sr = torch.sort(torch.where(inside, ranks, torch.iinfo(torch.int32).max), dim=-1).values
    sr = sr.clamp_(max=len(rank_values) - 1).to(torch.int64)   # entries past n are never read
    sv = rank_values.index_select(0, sr.reshape(-1)).reshape(sr.shape)
    vmin = sv[..., 0]
    vmax = torch.gather(sv, -1, (n - 1).clamp(min=0).unsqueeze(-1)).squeeze(-1)
    if "Minimum" in wanted:
        out["Minimum"] = vmin
    if "Maximum" in wanted:
        out["Maximum"] = vmax
    if "Range" in wanted:
        out["Range"] = vmax - vmin
    qs = (10, 25, 50, 75, 90)
    pct = dict(zip(qs, _percentiles(sv, n, qs).unbind(-1)))
    if "10Percentile" in wanted:
        out["10Percentile"] = pct[10]
    if "90Percentile" in wanted:
        out["90Percentile"] = pct[90]
    if "Median" in wanted:
        out["Median"] = pct[50]
    if "InterquartileRange" in wanted:
        out["InterquartileRange"] = pct[75] - pct[25]
    if "RobustMeanAbsoluteDeviation" in wanted:
        keep = inside & (values >= pct[10].unsqueeze(-1)) & (values <= pct[90].unsqueeze(-1))
        nk = keep.sum(-1).to(dtype)
        m = torch.where(keep, values, zero).sum(-1) / nk
        out["RobustMeanAbsoluteDeviation"] = torch.where(
            keep, (values - m.unsqueeze(-1)).abs(), zero).sum(-1) / nk
    return out


# --------------------------------------------------------------------------- GLCM

def glcm(levels, inside, tables, wanted, *, ng_max: int, roi_levels: int = 2, dtype=torch.float64):
    """GLCM features of each kernel, averaged over the directions that have pairs.

    `levels` (V, S) grey levels and `inside` (V, S) ROI flags of the kernel positions; `tables` the
    direction groups of pair_tables (as tensors). `ng_max` is pyradiomics' Ng (highest grey level in
    the ROI), used by Idmn and Idn; `roi_levels` the number of distinct grey levels in the ROI."""
    big = torch.iinfo(torch.int64).max
    lmin = torch.where(inside, levels, big).min(-1).values
    span = int((torch.where(inside, levels, 0).max(-1).values - lmin).max().item())
    # The difference and sum histograms take (centres x 13 x (3 span + 2)) counts: centres in
    # slices whose histograms stay within the budget (kernels spanning many grey levels).
    step = max(1, _HISTOGRAM_BYTES // (13 * (3 * span + 2) * 16))
    if step < levels.shape[0]:
        parts = [glcm(levels[a:a + step], inside[a:a + step], tables, wanted, ng_max=ng_max,
                      roi_levels=roi_levels, dtype=dtype) for a in range(0, levels.shape[0], step)]
        return {name: torch.cat([p[name] for p in parts]) for name in parts[0]}
    local = None
    if {"Imc1", "Imc2", "MCC"} & set(wanted) or (_JOINT_CELL_FEATURES & set(wanted)
                                                  and _compiled_cells(levels.device, span)):
        # The marginals of every direction count the levels of the kernel voxels that are ends of
        # pairs, indexed by level - (lowest level of the kernel): at most span + 1 slots, no sort;
        # the compiled joint cells count pairs of these local levels too. (Voxels outside the ROI
        # clamp to 0; they are never ends of a pair.)
        local = (levels - lmin.unsqueeze(-1)).clamp_(min=0)
    parts = [_glcm_directions(levels, inside, first, second, wanted, ng_max=ng_max, dtype=dtype,
                              local=local, lmin=lmin, span=span)
             for first, second in tables]
    if "MCC" in parts[0][0] and isinstance(parts[0][0]["MCC"], tuple):
        # LAPACK through torch: solved once for all direction groups (fewer, larger batches)
        ca, cb, ok, nlev, total, unit = _join_direction_groups([p[0]["MCC"] for p in parts])
        mcc = _second_eigen_sqrt(ca, cb, ok, nlev, total, dtype, unit=unit)
        for p, part in zip(parts, mcc.split([p[1].shape[-1] for p in parts], -1)):
            p[0]["MCC"] = part
    result = _mean_over_directions([p[0] for p in parts], [p[1] for p in parts])
    if "MCC" in result and roi_levels < 2:
        # pyradiomics returns 1 for every voxel when the whole ROI has one grey level
        result["MCC"] = torch.ones_like(result["MCC"])
    return result


def _glcm_directions(levels, inside, first, second, wanted, *, ng_max: int, dtype=torch.float64,
                     local=None, lmin=None, span=0):
    """Per-direction GLCM features of one group of directions with P pairs each: returns
    ({name: (V, directions)}, directions-with-pairs mask (V, directions)). `local` (V, S): level of
    each kernel voxel minus the kernel's lowest (needed for Imc1, Imc2 and MCC); `lmin` (V,)
    the kernel's lowest level and `span` the largest highest-minus-lowest level of the chunk."""
    pairs = _gather_pairs(levels, inside, first, second, local)
    nf = pairs.n.to(dtype).clamp(min=1)
    out = {}
    span = int(span)
    P = first.shape[1]
    if _MOMENT_FEATURES & set(wanted):
        out.update(_moment_features(pairs.li, pairs.lj, pairs.okc, pairs.n, nf, lmin, span, P, wanted,
                                    ng_max=ng_max, dtype=dtype))
    # MCC's eigen-solves compiled on the CPU (see _glcm_cpu), else LAPACK through torch
    compiled_mcc = "MCC" in wanted and _compiled_mcc(levels.device, dtype)
    cell_wanted = _cells_wanted(wanted, P, compiled_mcc)
    cells = {}
    if cell_wanted:
        cells = _joint_cells(pairs, lmin, span, P, cell_wanted, ng_max=ng_max, dtype=dtype)
        out.update({name: v for name, v in cells.items() if name in wanted})
    if {"Imc1", "Imc2", "MCC"} & set(wanted):
        out.update(_marginal_features(pairs, nf, span, P, cells, wanted, compiled_mcc=compiled_mcc,
                                      dtype=dtype))
    return out, pairs.n > 0


class _Pairs(NamedTuple):
    """The one-way pairs of one direction group, (V, directions, P) each: grey levels of the first
    and second ends, the same minus the kernel's lowest level (None without `local`), both ends in
    the ROI (bool and as 0/1 int64); and the pairs per direction n (V, directions)."""
    li: torch.Tensor
    lj: torch.Tensor
    la: torch.Tensor | None
    lb: torch.Tensor | None
    ok: torch.Tensor
    okc: torch.Tensor
    n: torch.Tensor


def _gather_pairs(levels, inside, first, second, local) -> _Pairs:
    """The pairs (first[d, q], second[d, q]) of kernel positions of each direction d, gathered from
    the kernels' levels, ROI flags and (if given) local levels."""
    V = levels.shape[0]
    shape = (V,) + tuple(first.shape)
    li = levels.index_select(1, first.reshape(-1)).reshape(shape)     # (V, directions, P)
    lj = levels.index_select(1, second.reshape(-1)).reshape(shape)
    ok = (inside.index_select(1, first.reshape(-1)) & inside.index_select(1, second.reshape(-1))).reshape(shape)
    n = ok.sum(-1)                                          # one-way pairs per direction
    la = lb = None
    if local is not None:
        # pair ends as level - kernel minimum (the marginals; the compiled joint cells)
        la = local.index_select(1, first.reshape(-1)).reshape(shape)
        lb = local.index_select(1, second.reshape(-1)).reshape(shape)
    return _Pairs(li, lj, la, lb, ok, ok.to(torch.int64), n)


def _cells_wanted(wanted, P: int, compiled_mcc: bool) -> set:
    """What to take from the distinct cells (joint-cell features; "graph" for MCC) for `wanted`."""
    cell_wanted = {"JointEnergy", "JointEntropy", "MaximumProbability"} & set(wanted)
    if "Imc1" in wanted or "Imc2" in wanted:
        cell_wanted.add("JointEntropy")                                  # HXY
    if "MCC" in wanted and (cell_wanted or (P <= 32 and not compiled_mcc)):
        # the distinct cells also tell which pair graphs have MCC = 1 (see _mcc_of_directions): free
        # when the cells are counted anyway, worth counting them for the few pairs of small kernels
        # when the solves are LAPACK calls
        cell_wanted.add("graph")
    return cell_wanted


def _joint_cells(pairs: _Pairs, lmin, span: int, P: int, cell_wanted, *, ng_max: int, dtype) -> dict:
    """The joint-cell features `cell_wanted` of each direction (_joint_cell_features): from a dense
    histogram for kernels spanning few levels, else from the distinct cells counted by the compiled
    CPU loop, else from a sort of the pair codes."""
    if (span + 1) ** 2 <= min(3 * P, _DENSE_CELLS):
        return _joint_cells_dense(pairs.li, pairs.lj, pairs.okc, pairs.n, lmin, span, cell_wanted, dtype)
    if _compiled_cells(pairs.li.device, span):
        lead = pairs.li.shape[:-1]
        counts, diag = _glcm_cpu.distinct_cells(pairs.la.reshape(-1, P).numpy(),
                                                pairs.lb.reshape(-1, P).numpy(),
                                                pairs.ok.reshape(-1, P).numpy(), span + 1)
        return _joint_cell_features(torch.from_numpy(counts).reshape(lead + (-1,)),
                                    torch.from_numpy(diag).reshape(lead + (-1,)), pairs.n, P,
                                    cell_wanted, dtype)
    sentinel = int(torch.iinfo(torch.int64).max)
    return _joint_cells_one_way(pairs.li, pairs.lj, pairs.ok, pairs.n, ng_max + 1, sentinel, cell_wanted,
                                dtype)


def _marginal_features(pairs: _Pairs, nf, span: int, P: int, cells: dict, wanted, *, compiled_mcc: bool,
                       dtype) -> dict:
    """Imc1, Imc2 and MCC of each direction (those in `wanted`) from the marginal counts, with
    the joint-cell results `cells` (HXY; the pair graph)."""
    total = 2 * nf                                                    # sum of the symmetric GLCM
    # Marginal count of a level = the pair ends (both ends of every one-way pair) at that level.
    nloc = span + 1
    counts = torch.zeros(pairs.la.shape[:-1] + (nloc,), dtype=torch.int64, device=pairs.la.device)
    counts.scatter_add_(-1, pairs.la, pairs.okc).scatter_add_(-1, pairs.lb, pairs.okc)
    present = counts > 0
    nlev = present.sum(-1)                                            # levels L present
    out = {}
    if "Imc1" in wanted or "Imc2" in wanted:
        out.update(_imc_features(counts, pairs.n, nlev, cells["JointEntropy"], P, wanted, dtype))
    if "MCC" in wanted:
        out["MCC"] = _mcc_of_directions(pairs, present, nlev, total, cells.get("graph"), nloc, P,
                                        compiled=compiled_mcc)
    return out


def _imc_features(counts, n, nlev, hxy, P: int, wanted, dtype) -> dict:
    """Imc1 and Imc2 (those in `wanted`) from the marginal counts (`nlev` levels present, 2 n pair
    ends) and the joint entropy HXY."""
    out = {}
    hx = _entropy_of_counts(counts, 2 * n, 2 * P, dtype)
    # Both joint entropies of the marginals follow from HX = -sum px log2(px + eps), with
    # log2(u + eps) = log2(u) + eps / (u ln 2) to within (eps / u)^2 (u >= 1 / (2 pairs)^2):
    # HXY1 = -sum_ij p_ij log2(px_i px_j + eps) = 2 HX + 2 L eps / ln 2 - eps / ln 2 sum_ij
    # p_ij / (px_i px_j), the last term < 1e-13 (left out); HXY2 = -sum_ij px_i px_j
    # log2(px_i px_j + eps) = 2 HX + (2 L - L^2) eps / ln 2 (sum px = 1).
    l_eps = nlev.to(dtype) * (EPS / math.log(2))
    two_hx = 2 * hx + 2 * l_eps
    if "Imc1" in wanted:
        hxy1 = two_hx
        div = hx  # max(HX, HY) with HX == HY for a symmetric matrix
        # one level: HXY = HXY1 = HX = -log2(1 + eps) in pyradiomics, 0 / HX = 0 (the left-out
        # term is not negligible against that tiny HX)
        imc1 = torch.where((div != 0) & (nlev > 1),
                           (hxy - hxy1) / torch.where(div != 0, div, torch.ones_like(div)),
                           torch.zeros_like(div))
        out["Imc1"] = imc1
    if "Imc2" in wanted:
        hxy2 = two_hx - l_eps * nlev.to(dtype)
        val = 1 - torch.exp(-2 * (hxy2 - hxy))
        # pyradiomics: (1 - e^..)^0.5, NaN when negative, and 0 where HXY2 == HXY. HXY2 == HXY
        # means independent rows and columns (zero mutual information), which small kernels
        # hit exactly with simple counts; HXY2 comes here from HX, not from pyradiomics' sum,
        # so "equal" is taken to a few ulps, not bitwise.
        same = (hxy2 - hxy).abs() <= _SAME_ENTROPY_ULPS * EPS * hxy.abs().clamp(min=1)
        imc2 = torch.where(val < 0, torch.full_like(val, float("nan")), torch.sqrt(val.clamp(min=0)))
        imc2 = torch.where(same, torch.zeros_like(imc2), imc2)
        out["Imc2"] = imc2
    return out


def _mcc_of_directions(pairs: _Pairs, present, nlev, total, graph, nloc: int, P: int, *, compiled: bool):
    """MCC of each direction: (V, directions) from the compiled CPU solves, else the inputs of
    _second_eigen_sqrt (ca, cb, ok, nlev, total, unit), solved once for all direction groups by
    glcm. `graph`: the distinct (edges, loops) of the pair graph, or None."""
    unit = None
    if graph is not None:
        # Graph of the levels joined by the pairs: disconnected (1 is a double eigenvalue of
        # T) or bipartite (-1 is one) gives MCC = 1. Counting rules that need no search:
        # fewer distinct edges than levels - 1 cannot connect; a loop-free graph with
        # levels - 1 edges is a tree (bipartite) or disconnected.
        off, loops = graph
        unit = (off < nlev - 1) | ((loops == 0) & (off <= nlev - 1))
    if compiled:
        # compiled eigen-solves, one loop over this group's matrices (see _glcm_cpu)
        if unit is None:
            unit = torch.zeros_like(nlev, dtype=torch.bool)
        return torch.from_numpy(_glcm_cpu.mcc(
            pairs.la.reshape(-1, P).numpy(), pairs.lb.reshape(-1, P).numpy(), pairs.ok.reshape(-1, P).numpy(),
            nlev.reshape(-1).numpy(), unit.reshape(-1).numpy(), nloc)).reshape(nlev.shape)
    # matrices over the levels present in each direction: renumber the kernel's levels
    compact = (torch.cumsum(present, -1) - 1).clamp_(min=0)   # (ends of no pair: weight 0)
    ca = torch.gather(compact, -1, pairs.la)
    cb = torch.gather(compact, -1, pairs.lb)
    # solved once for all direction groups by glcm (fewer, larger LAPACK batches)
    return (ca, cb, pairs.ok, nlev, total, unit)


def _compiled_mcc(device, dtype) -> bool:
    """MCC's eigen-solves by the compiled CPU loop (float64 on the CPU, numba installed)."""
    return device.type == "cpu" and dtype == torch.float64 and _glcm_cpu.available()


# The compiled joint cells keep a table of (span + 1)^2 slots: up to this many (64 MiB).
_COMPILED_CELL_SLOTS = 2 ** 23


def _compiled_cells(device, span: int) -> bool:
    """Joint cells counted by the compiled CPU loop (on the CPU, numba installed, kernels spanning
    at most ~2900 grey levels) rather than by a sort."""
    return device.type == "cpu" and _glcm_cpu.available() and (span + 1) ** 2 <= _COMPILED_CELL_SLOTS


_JOINT_CELL_FEATURES = frozenset({"JointEnergy", "JointEntropy", "MaximumProbability", "Imc1", "Imc2"})


# Joint cells from a dense (span + 1)^2 histogram (no sort) when it has at most this many cells
# (and at most 3 per pair): wider ones cost more memory traffic than the sort they save.
_DENSE_CELLS = 64

# Features from the histograms of the difference and the sum of the pair levels.
_MOMENT_FEATURES = frozenset({
    "Autocorrelation", "JointAverage", "SumAverage", "ClusterTendency", "ClusterShade", "ClusterProminence",
    "Contrast", "DifferenceAverage", "DifferenceVariance", "Idm", "Id", "Idmn", "Idn", "InverseVariance",
    "SumSquares", "Correlation", "DifferenceEntropy", "SumEntropy"})


def _moment_features(li, lj, okc, n, nf, lmin, span, P, wanted, *, ng_max, dtype):
    """The GLCM features that are sums over the pairs of a function of |i - j| or of i + j (all but
    the joint-cell and marginal ones), per direction: {name: (V, directions)}."""
    out = {}
    # Every feature but the joint-cell ones (entropy, energy, maximum, marginals) is a sum over the
    # pairs of a function of the difference k = |i - j| or of the sum i + j, so over the histograms
    # of k and of j = i + j - 2 (lowest level of the kernel): short (span = highest - lowest level
    # in a kernel), filled by one scatter each, summed against tables of the functions. Pairs
    # outside the kernel or ROI have weight 0 (their clamped bins do not matter).
    k = (li - lj).abs().clamp_(max=span)
    j = (li + lj - 2 * lmin.view(-1, 1, 1)).clamp_(0, 2 * span)
    dev = li.device
    shape = li.shape
    hk_c = torch.zeros(shape[:-1] + (span + 1,), dtype=torch.int64, device=dev).scatter_add_(-1, k, okc)
    hs_c = torch.zeros(shape[:-1] + (2 * span + 1,), dtype=torch.int64, device=dev).scatter_add_(-1, j, okc)
    f64 = torch.float64  # the sums in float64 whatever `dtype` (whole-number sums stay exact)
    kv = torch.arange(span + 1, dtype=f64, device=dev)
    ngf = float(ng_max)
    kfun = hk_c.to(f64) @ torch.stack([kv, kv ** 2, 1 / (1 + kv ** 2), 1 / (1 + kv), 1 / (1 + kv ** 2 / ngf ** 2),
                                       1 / (1 + kv / ngf), torch.where(kv > 0, 1 / kv.clamp(min=1) ** 2, 0)], -1)
    jv = torch.arange(2 * span + 1, dtype=f64, device=dev)
    jpow = hs_c.to(f64) @ torch.stack([jv, jv ** 2, jv ** 3, jv ** 4], -1)
    n64 = n.to(f64).clamp(min=1)
    # The power sums are whole numbers, exact in float64; the central moments are taken from them in
    # int64 (exact, one rounding at the end) unless the largest term could overflow (kernels
    # spanning hundreds of grey levels), then in floating point.
    exact = 16 * (P * 2 * span) ** 4 < _INT64_MOMENT_BOUND
    it = torch.int64 if exact else f64
    nn = n.to(it)
    K1, K2 = kfun[..., 0].to(it), kfun[..., 1].to(it)
    T1, T2, T3, T4 = (jpow[..., q].to(it) for q in range(4))
    S1 = T1 + nn * (2 * lmin.view(-1, 1)).to(it)               # sum of i + j over the pairs

    def over(num, power):
        return (num.to(f64) / n64 ** power).to(dtype)

    ux = over(S1, 1) / 2                                      # mean of i (= mean of j, symmetric)
    if "Autocorrelation" in wanted:
        # i j = ((i + j)^2 - k^2) / 4; sum (i + j)^2 from the shifted sums
        S2 = T2 + 2 * (2 * lmin.view(-1, 1)).to(it) * T1 + nn * (2 * lmin.view(-1, 1)).to(it) ** 2
        out["Autocorrelation"] = over(S2 - K2, 1) / 4
    if "JointAverage" in wanted:
        out["JointAverage"] = ux
    if "SumAverage" in wanted:
        out["SumAverage"] = over(S1, 1)
    if "ClusterTendency" in wanted:
        out["ClusterTendency"] = over(nn * T2 - T1 ** 2, 2)
    if "ClusterShade" in wanted:
        out["ClusterShade"] = over(nn ** 2 * T3 - 3 * nn * T1 * T2 + 2 * T1 ** 3, 3)
    if "ClusterProminence" in wanted:
        out["ClusterProminence"] = over(nn ** 3 * T4 - 4 * nn ** 2 * T1 * T3 + 6 * nn * T1 ** 2 * T2
                                        - 3 * T1 ** 4, 4)
    if "Contrast" in wanted:
        out["Contrast"] = over(K2, 1)
    if "DifferenceAverage" in wanted:
        out["DifferenceAverage"] = over(K1, 1)
    if "DifferenceVariance" in wanted:
        out["DifferenceVariance"] = over(nn * K2 - K1 ** 2, 2)
    for q, name in enumerate(("Idm", "Id", "Idmn", "Idn", "InverseVariance"), start=2):
        if name in wanted:
            out[name] = (kfun[..., q] / n64).to(dtype)
    if "SumSquares" in wanted or "Correlation" in wanted:
        # variance of i over the symmetric matrix and covariance of i and j: i^2 + j^2 and i j from
        # the sum and difference; both are shift-invariant, so the shifted sums serve
        var = over(nn * (T2 + K2) - T1 ** 2, 2) / 4
        if "SumSquares" in wanted:
            out["SumSquares"] = var
        if "Correlation" in wanted:
            sig = torch.sqrt(var)
            corm = over(nn * (T2 - K2) - T1 ** 2, 2) / 4
            corr = corm / (sig * sig + EPS)
            out["Correlation"] = torch.where(sig * sig == 0, torch.ones_like(corr), corr)
    if "DifferenceEntropy" in wanted:
        out["DifferenceEntropy"] = _entropy_of_counts(hk_c, n, P, dtype)
    if "SumEntropy" in wanted:
        out["SumEntropy"] = _entropy_of_counts(hs_c, n, P, dtype)

    return out


def _join_direction_groups(groups):
    """Concatenate the MCC inputs (ca, cb, ok, nlev, total, unit) of the direction groups along the
    direction axis; pair axes padded to the longest with invalid pairs."""
    E = max(g[0].shape[-1] for g in groups)

    def pad(t, value):
        return torch.nn.functional.pad(t, (0, E - t.shape[-1]), value=value)

    ca = torch.cat([pad(g[0], 0) for g in groups], 1)
    cb = torch.cat([pad(g[1], 0) for g in groups], 1)
    ok = torch.cat([pad(g[2], False) for g in groups], 1)
    nlev = torch.cat([g[3] for g in groups], 1)
    total = torch.cat([g[4] for g in groups], 1)
    units = [g[5] if g[5] is not None else torch.zeros_like(g[3], dtype=torch.bool) for g in groups]
    return ca, cb, ok, nlev, total, torch.cat(units, 1)


def _joint_cell_features(counts, diag, n, max_pairs, wanted, dtype):
    """JointEntropy, JointEnergy, MaximumProbability (and, as "graph", the distinct off-diagonal
    and diagonal cells) from the one-way counts of the distinct level pairs (`counts`, zeros
    allowed) and their diagonal flags: a pair {i, j} seen c times fills the symmetric matrix with two
    cells of count c (i != j) or one of count 2c (i == j); n one-way pairs in all (max_pairs at most)."""
    cell = counts << diag                                             # count of one cell
    total = 2 * n                                                     # sum of the symmetric GLCM
    cells = torch.where(diag, 1.0, 2.0).to(dtype)                     # cells with that count
    out = {}
    if "JointEntropy" in wanted:
        out["JointEntropy"] = _entropy_of_counts(cell, total, 2 * max_pairs, dtype, weights=cells)
    if {"JointEnergy", "MaximumProbability"} & set(wanted):
        p = cell.to(dtype) / total.clamp(min=1).to(dtype).unsqueeze(-1)  # probability of one cell
        if "JointEnergy" in wanted:
            out["JointEnergy"] = (cells * p * p).sum(-1)
        if "MaximumProbability" in wanted:
            out["MaximumProbability"] = p.max(-1).values
    if "graph" in wanted:
        used = counts > 0
        out["graph"] = ((used & ~diag).sum(-1), (used & diag).sum(-1))   # distinct edges, loops
    return out


def _joint_cells_dense(li, lj, okc, n, lmin, span, wanted, dtype):
    """The same as _joint_cells_one_way for kernels spanning few grey levels (w = span + 1): the
    one-way pair counts as a dense w x w histogram of (lower, higher) level - kernel minimum, one
    scatter instead of a sort; empty cells add nothing."""
    w = span + 1
    base = lmin.view(-1, 1, 1)
    a = (li - base).clamp_(0, span)                 # pairs outside the ROI: clamped, weight 0
    b = (lj - base).clamp_(0, span)
    code = torch.minimum(a, b) * w + torch.maximum(a, b)
    counts = torch.zeros(li.shape[:-1] + (w * w,), dtype=torch.int64, device=li.device)
    counts.scatter_add_(-1, code, okc)
    cell_index = torch.arange(w * w, device=li.device)
    diag = (cell_index // w) == (cell_index % w)                     # (w*w,) diagonal cells
    return _joint_cell_features(counts, diag, n, li.shape[-1], wanted, dtype)


def _joint_cells_one_way(li, lj, ok, n, base, sentinel, wanted, dtype):
    """The joint-cell features (_joint_cell_features) from the one-way pairs only (half the sort of
    the symmetric list): the distinct pairs are the runs of the sorted pair codes."""
    lo = torch.minimum(li, lj)
    hi = torch.maximum(li, lj)
    code = lo * base + hi
    if base * base < 2 ** 31 - 1:
        code = code.to(torch.int32)  # a shorter key sorts faster
        sentinel = 2 ** 31 - 1
    sc, sv, perm = _masked_sort(code, ok, sentinel)
    counts, run = _run_counts(sc, sv)
    # diagonal flag of each run (invalid entries write to the last slot, never a real run then)
    slot = torch.where(sv, run, torch.full_like(run, sc.shape[-1] - 1))
    diag_entry = sv & torch.gather(li == lj, -1, perm)
    diag = torch.zeros(sc.shape, dtype=torch.bool, device=sc.device).scatter_(-1, slot, diag_entry)
    diag = diag[..., :counts.shape[-1]]
    return _joint_cell_features(counts, diag, n, li.shape[-1], wanted, dtype)


def _second_eigen_sqrt(row_local, col_local, valid, nlev, total, dtype, unit=None):
    """sqrt of the second largest eigenvalue of Q = D^-1 P D^-1 P (D = diag of the marginal px, P the
    normalised symmetric GLCM of one kernel and direction, given as its one-way pairs: local level
    indices `row_local`, `col_local` among the `nlev` levels present, `valid` flags), computed
    through T = D^-1/2 P D^-1/2: Q is similar to T^2, so lambda(Q) = lambda(T)^2, and T is symmetric
    (cheap, real eigenvalues). The largest eigenvalue of T is 1 (eigenvector sqrt(px)); with 2
    levels the other one is trace(T) - 1. pyradiomics adds eps to
    px_i py_k in Q; that changes Q by < 1e-11 relative (px >= 1 / (2 x pairs)), below the tolerance.
    Matrices are built and solved in groups of equal size (number of levels present), so that each
    is only as large as it needs to be."""
    lead = nlev.shape
    E = row_local.shape[-1]
    n = nlev.reshape(-1)
    out = torch.zeros(n.shape[0], dtype=dtype, device=n.device)     # one level: 0
    if unit is not None:
        # second eigenvalue +-1 known from the pair graph (see _mcc_of_directions): nothing to solve
        unit = unit.reshape(-1)
        out[unit] = 1
        n = torch.where(unit, torch.ones_like(n), n)
    # matrices in order of size: each size's entries are then one slice, gathered once
    order = torch.argsort(n)
    sizes, per_size = torch.unique_consecutive(n[order], return_counts=True)
    many = order[n[order] > 1]
    rows = row_local.reshape(-1, E).index_select(0, many)
    cols = col_local.reshape(-1, E).index_select(0, many)
    w = valid.reshape(-1, E).index_select(0, many).to(dtype)
    tot = total.reshape(-1).index_select(0, many)
    res = torch.empty(len(many), dtype=dtype, device=n.device)
    at = 0
    for size, count in zip(sizes.tolist(), per_size.tolist()):
        if size < 2:
            continue
        sl = slice(at, at + count)
        at += count
        P = torch.zeros(count, size * size, dtype=dtype, device=n.device)
        # each one-way pair (i, j) and its mirror (j, i)
        P.scatter_add_(1, rows[sl] * size + cols[sl], w[sl]).scatter_add_(1, cols[sl] * size + rows[sl], w[sl])
        # T is the same for the counts as for the probabilities (the scale cancels): no division
        P = P.reshape(-1, size, size)
        rowsum = P.sum(-1)
        inv_sqrt = 1 / torch.sqrt(rowsum)
        T = P * inv_sqrt.unsqueeze(-1) * inv_sqrt.unsqueeze(-2)
        if size == 2:
            res[sl] = (T[:, 0, 0] + T[:, 1, 1] - 1).abs()
        elif size == 3:
            # the two other eigenvalues a, b: a + b = trace - 1, a^2 + b^2 = |T|_F^2 - 1
            t = torch.diagonal(T, dim1=-2, dim2=-1).sum(-1) - 1
            f = (T * T).sum((-1, -2)) - 1
            res[sl] = (t.abs() + torch.sqrt((2 * f - t * t).clamp(min=0))) / 2
        else:
            # Deflate the known eigenpair (1, v = sqrt(px), a unit vector): the Householder reflection
            # H = I - 2 u u^T / u^T u, u = v + e1, maps v to -e1, so H T H has first row and column
            # (1, 0, ...) and its trailing block holds the other size - 1 eigenvalues, whose largest
            # square is the one wanted (a smaller eigen-solve).
            u = torch.sqrt(rowsum / tot[sl].unsqueeze(-1))                # v = sqrt(px)
            u[:, 0] += 1
            beta = 2 / (u * u).sum(-1, keepdim=True)
            tu = beta * (T @ u.unsqueeze(-1)).squeeze(-1)
            z = tu - (beta / 2 * (u * tu).sum(-1, keepdim=True)) * u
            u1, z1 = u[:, 1:], z[:, 1:]
            block = T[:, 1:, 1:] - u1.unsqueeze(-1) * z1.unsqueeze(-2) - z1.unsqueeze(-1) * u1.unsqueeze(-2)
            if size == 4:
                val, ok = _max_abs_eig_sym3(block)
                if not bool(ok.all()):
                    bad = (~ok).nonzero().squeeze(-1)
                    ev = torch.linalg.eigvalsh(block.index_select(0, bad))
                    val[bad] = torch.maximum(ev[:, 0].abs(), ev[:, -1].abs())
                res[sl] = val
            else:
                ev = torch.linalg.eigvalsh(block)
                res[sl] = torch.maximum(ev[:, 0].abs(), ev[:, -1].abs())
    out[many] = res
    return out.reshape(lead)



# Closed-form 3x3 eigenvalues are used only where the wanted extreme one is this far (as 1 -+ r of
# the trigonometric form) from the middle one; closer, the form loses digits (sqrt(eps) at a double
# root) and LAPACK solves those.
_SYM3_SEPARATION = 1e-6


def _max_abs_eig_sym3(a: torch.Tensor):
    """Largest |eigenvalue| of symmetric 3x3 matrices (batch, 3, 3) in closed form (trigonometric
    solution of the characteristic cubic: eigenvalues q + 2 p cos(phi + 2 pi k / 3), r = cos 3 phi =
    det((A - q I) / p) / 2). The extreme eigenvalues carry an error of a few eps x p except where the
    top one nears the middle one (r -> -1) or the bottom one does (r -> 1). Returns (values, ok):
    ok False where the extreme that is wanted is too close to the middle one (solve those with LAPACK)."""
    a00, a11, a22 = a[:, 0, 0], a[:, 1, 1], a[:, 2, 2]
    a01, a02, a12 = a[:, 0, 1], a[:, 0, 2], a[:, 1, 2]
    q = (a00 + a11 + a22) / 3
    b00, b11, b22 = a00 - q, a11 - q, a22 - q
    p = torch.sqrt((b00 * b00 + b11 * b11 + b22 * b22 + 2 * (a01 * a01 + a02 * a02 + a12 * a12)) / 6)
    flat = p <= 1e-14                                  # a multiple of I: every eigenvalue is q
    ps = torch.where(flat, 1.0, p)
    det = (b00 * (b11 * b22 - a12 * a12) - a01 * (a01 * b22 - a12 * a02) + a02 * (a01 * a12 - b11 * a02))
    r = (det / (ps * ps * ps) / 2).clamp(-1, 1)
    phi = torch.acos(r) / 3
    top = q + 2 * p * torch.cos(phi)
    bottom = q + 2 * p * torch.cos(phi + 2 * math.pi / 3)
    want_top = top.abs() >= bottom.abs()
    value = torch.where(flat, q.abs(), torch.where(want_top, top.abs(), bottom.abs()))
    ok = flat | torch.where(want_top, r > -1 + _SYM3_SEPARATION, r < 1 - _SYM3_SEPARATION)
    return value, ok
