"""Per-voxel first-order and GLCM features of masked cubic kernels, vectorised in PyTorch.

Private to `texture_maps`. Everything works on one chunk of kernel centres at a time: the caller
gathers, for every centre, the (2r+1)^3 kernel values, grey levels and ROI flags into (V, S) tensors
(S kernel positions in C order), and these functions return a dict feature name -> (V,) tensor.

The definitions follow pyradiomics 3.0.1 (firstorder.py, glcm.py, cmatrices.c) exactly, but the
GLCM is never built as an Ng x Ng matrix: every GLCM feature is a sum over the co-occurring pairs of
one kernel and one direction, or over the distinct values among them (found by sorting the pair
codes and counting runs). That keeps the cost proportional to the number of pairs in a kernel
(158 per direction set at radius 1) whatever the number of grey levels in the ROI.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import torch

# numpy.spacing(1): the epsilon pyradiomics adds inside every log2.
EPS = float(np.spacing(1))
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


def kernel_offsets(radius: int) -> np.ndarray:
    """(S, 3) offsets (dz, dy, dx) of a cube of half-width `radius`, in C order."""
    r = range(-radius, radius + 1)
    return np.array(list(itertools.product(r, r, r)), dtype=np.int64)


def glcm_directions() -> np.ndarray:
    """The 13 one-way unit directions of 3D (distance 1, infinity norm); the opposite way is covered
    by making each matrix symmetric, as pyradiomics does by default (symmetricalGLCM)."""
    dirs = [d for d in itertools.product((-1, 0, 1), repeat=3) if d > (0, 0, 0)]
    return np.array(dirs, dtype=np.int64)


def pair_tables(radius: int):
    """For each direction, the kernel positions (a, b) with b = a + direction inside the cube,
    grouped by the number of pairs (axis, face-diagonal and body-diagonal directions of a cube each
    have the same count), so that no table needs padding.

    Returns a list of (first, second) int64 arrays of shape (directions in group, pairs)."""
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
    return tables


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


def _entropy_of_counts(counts: torch.Tensor, total: torch.Tensor, dtype) -> torch.Tensor:
    """-sum p log2(p + eps) over runs, p = count / total (pyradiomics' entropy; unused runs give 0)."""
    p = counts.to(dtype) / total.unsqueeze(-1)
    return -(p * torch.log2(p + EPS)).sum(-1)


def _masked_sort(codes: torch.Tensor, valid: torch.Tensor, sentinel: int):
    """Sort codes with invalid entries pushed to the end."""
    keyed = torch.where(valid, codes, torch.full_like(codes, sentinel))
    sorted_codes, perm = torch.sort(keyed, dim=-1)
    return sorted_codes, sorted_codes != sentinel, perm


def _nanmean_angles(values: torch.Tensor, angle_ok: torch.Tensor) -> torch.Tensor:
    """Mean over the directions that have pairs in this kernel (pyradiomics drops empty ones);
    NaN where a kernel has no pairs at all; NaN per direction (e.g. MCC) is skipped as numpy.nanmean."""
    ok = angle_ok & ~torch.isnan(values)
    num = torch.where(ok, values, torch.zeros_like(values)).sum(-1)
    cnt = ok.sum(-1)
    return torch.where(cnt > 0, num / cnt.clamp(min=1).to(values.dtype), torch.full_like(num, float("nan")))


# --------------------------------------------------------------------------- first order

def _percentile(sorted_vals: torch.Tensor, n: torch.Tensor, q: float) -> torch.Tensor:
    """numpy.nanpercentile (method 'linear') of rows whose n valid values come first, sorted."""
    pos = (q / 100.0) * (n.to(sorted_vals.dtype) - 1)
    lo = torch.floor(pos).to(torch.int64).clamp(min=0)
    hi = torch.ceil(pos).to(torch.int64).clamp(min=0)
    a = torch.gather(sorted_vals, -1, lo.unsqueeze(-1)).squeeze(-1)
    b = torch.gather(sorted_vals, -1, hi.unsqueeze(-1)).squeeze(-1)
    t = pos - lo.to(pos.dtype)
    diff = b - a
    # numpy's _lerp: a + d t, or b - d (1 - t) when t >= 0.5 (keeps the result monotone)
    return torch.where(t >= 0.5, b - diff * (1 - t), a + diff * t)


def firstorder(values, levels, inside, wanted, *, voxel_array_shift=0.0, voxel_volume=1.0):
    """First-order features of each kernel: `values` (V, S) float image values, `levels` (V, S) int
    grey levels, `inside` (V, S) bool (kernel voxel in the ROI). Same formulas as pyradiomics'
    firstorder.py in voxel-based mode (NaN-masked kernels, entropy on discretised levels)."""
    dtype = values.dtype
    zero = torch.zeros((), dtype=dtype, device=values.device)
    n = inside.sum(-1)
    nf = n.to(dtype)
    x = torch.where(inside, values, zero)
    out = {}
    mean = x.sum(-1) / nf
    dev = torch.where(inside, values - mean.unsqueeze(-1), zero)

    def moment(k):
        return (dev ** k).sum(-1) / nf

    shifted = torch.where(inside, values + voxel_array_shift, zero)
    energy = (shifted ** 2).sum(-1)
    if "Energy" in wanted:
        out["Energy"] = energy
    if "TotalEnergy" in wanted:
        out["TotalEnergy"] = energy * voxel_volume
    if "RootMeanSquared" in wanted:
        out["RootMeanSquared"] = torch.sqrt(energy / nf)
    if "Mean" in wanted:
        out["Mean"] = mean
    if "Variance" in wanted:
        out["Variance"] = torch.sqrt(moment(2)) ** 2  # numpy.nanstd(...) ** 2, as pyradiomics
    if "Skewness" in wanted or "Kurtosis" in wanted:
        m2 = moment(2)
        m2 = torch.where(m2 == 0, torch.ones_like(m2), m2)  # flat kernel: m3 = m4 = 0 -> feature 0
        if "Skewness" in wanted:
            out["Skewness"] = moment(3) / m2 ** 1.5
        if "Kurtosis" in wanted:
            out["Kurtosis"] = moment(4) / m2 ** 2.0
    if "MeanAbsoluteDeviation" in wanted:
        out["MeanAbsoluteDeviation"] = dev.abs().sum(-1) / nf
    need_sorted = {"Minimum", "Maximum", "Range", "10Percentile", "90Percentile", "Median",
                   "InterquartileRange", "RobustMeanAbsoluteDeviation"} & set(wanted)
    if need_sorted:
        inf = torch.tensor(float("inf"), dtype=dtype, device=values.device)
        sv = torch.sort(torch.where(inside, values, inf), dim=-1).values
        vmin = sv[..., 0]
        vmax = torch.gather(sv, -1, (n - 1).clamp(min=0).unsqueeze(-1)).squeeze(-1)
        if "Minimum" in wanted:
            out["Minimum"] = vmin
        if "Maximum" in wanted:
            out["Maximum"] = vmax
        if "Range" in wanted:
            out["Range"] = vmax - vmin
        pct = {q: _percentile(sv, n, q) for q in (10, 25, 50, 75, 90)}
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
    if "Entropy" in wanted or "Uniformity" in wanted:
        sentinel = int(torch.iinfo(torch.int64).max)
        sorted_levels, ok, _ = _masked_sort(levels, inside, sentinel)
        counts, _ = _run_counts(sorted_levels, ok)
        if "Entropy" in wanted:
            out["Entropy"] = _entropy_of_counts(counts, nf, dtype)
        if "Uniformity" in wanted:
            p = counts.to(dtype) / nf.unsqueeze(-1)
            out["Uniformity"] = (p ** 2).sum(-1)
    return out


# --------------------------------------------------------------------------- GLCM

def glcm(levels, inside, tables, wanted, *, ng_max: int, roi_levels: int = 2, dtype=torch.float64):
    """GLCM features of each kernel, averaged over the directions that have pairs.

    `levels` (V, S) grey levels and `inside` (V, S) ROI flags of the kernel positions; `tables` the
    direction groups of pair_tables (as tensors). `ng_max` is pyradiomics' Ng (highest grey level in
    the ROI), used by Idmn and Idn; `roi_levels` the number of distinct grey levels in the ROI."""
    parts = [_glcm_directions(levels, inside, first, second, wanted, ng_max=ng_max, dtype=dtype)
             for first, second in tables]
    angle_ok = torch.cat([p[1] for p in parts], -1)
    result = {name: _nanmean_angles(torch.cat([p[0][name] for p in parts], -1), angle_ok)
              for name in parts[0][0]}
    if "MCC" in result and roi_levels < 2:
        # pyradiomics returns 1 for every voxel when the whole ROI has one grey level
        result["MCC"] = torch.ones_like(result["MCC"])
    return result


def _glcm_directions(levels, inside, first, second, wanted, *, ng_max: int, dtype=torch.float64):
    """Per-direction GLCM features of one group of directions with P pairs each: returns
    ({name: (V, directions)}, directions-with-pairs mask (V, directions))."""
    V = levels.shape[0]
    shape = (V,) + tuple(first.shape)
    li = levels.index_select(1, first.reshape(-1)).reshape(shape)     # (V, directions, P)
    lj = levels.index_select(1, second.reshape(-1)).reshape(shape)
    ok = (inside.index_select(1, first.reshape(-1)) & inside.index_select(1, second.reshape(-1))).reshape(shape)
    gi = li.to(dtype)
    gj = lj.to(dtype)
    n = ok.sum(-1)                                          # one-way pairs per direction
    angle_ok = n > 0
    nf = n.to(dtype).clamp(min=1)
    zero = torch.zeros((), dtype=dtype, device=levels.device)
    okf = ok.to(dtype)

    def pair_mean(f):
        # Mean over the n one-way pairs (= over the 2n entries of the symmetric matrix for these
        # symmetric f). Sum first, divide once: sums of integer-valued f are exact, so a flat
        # direction gives its mean exactly (e.g. ux = level, variance 0, Correlation 1, as
        # pyradiomics). Every f is finite for any level pair, so a zero flag drops pairs outside.
        return (f * okf).sum(-1) / nf

    out = {}
    k = (gi - gj).abs()
    s = gi + gj
    ux = pair_mean(s) / 2                                    # mean of i (= mean of j, symmetric)
    if "Autocorrelation" in wanted:
        out["Autocorrelation"] = pair_mean(gi * gj)
    if "JointAverage" in wanted:
        out["JointAverage"] = ux
    if "SumAverage" in wanted:
        out["SumAverage"] = pair_mean(s)
    for name, power in (("ClusterTendency", 2), ("ClusterShade", 3), ("ClusterProminence", 4)):
        if name in wanted:
            out[name] = pair_mean((s - 2 * ux.unsqueeze(-1)) ** power)
    if "Contrast" in wanted:
        out["Contrast"] = pair_mean(k ** 2)
    da = pair_mean(k)
    if "DifferenceAverage" in wanted:
        out["DifferenceAverage"] = da
    if "DifferenceVariance" in wanted:
        out["DifferenceVariance"] = pair_mean((k - da.unsqueeze(-1)) ** 2)
    if "Idm" in wanted:
        out["Idm"] = pair_mean(1 / (1 + k ** 2))
    if "Id" in wanted:
        out["Id"] = pair_mean(1 / (1 + k))
    if "Idmn" in wanted:
        out["Idmn"] = pair_mean(1 / (1 + k ** 2 / float(ng_max) ** 2))
    if "Idn" in wanted:
        out["Idn"] = pair_mean(1 / (1 + k / float(ng_max)))
    if "InverseVariance" in wanted:
        out["InverseVariance"] = pair_mean(torch.where(k > 0, 1 / k.clamp(min=1) ** 2, zero))
    if "SumSquares" in wanted or "Correlation" in wanted:
        di = gi - ux.unsqueeze(-1)
        dj = gj - ux.unsqueeze(-1)
        var = pair_mean((di ** 2 + dj ** 2) / 2)
        if "SumSquares" in wanted:
            out["SumSquares"] = var
        if "Correlation" in wanted:
            sig = torch.sqrt(var)
            corm = pair_mean(di * dj)
            corr = corm / (sig * sig + EPS)
            out["Correlation"] = torch.where(sig * sig == 0, torch.ones_like(corr), corr)

    sentinel = int(torch.iinfo(torch.int64).max)
    base = ng_max + 1
    if "DifferenceEntropy" in wanted:
        sc, sv, _ = _masked_sort(k.to(torch.int64), ok, sentinel)
        out["DifferenceEntropy"] = _entropy_of_counts(_run_counts(sc, sv)[0], nf, dtype)
    if "SumEntropy" in wanted:
        sc, sv, _ = _masked_sort(s.to(torch.int64), ok, sentinel)
        out["SumEntropy"] = _entropy_of_counts(_run_counts(sc, sv)[0], nf, dtype)

    cell_names = {"JointEnergy", "JointEntropy", "MaximumProbability"}
    if cell_names & set(wanted) and not {"Imc1", "Imc2", "MCC"} & set(wanted):
        out.update(_joint_cells_one_way(li, lj, ok, nf, base, sentinel, wanted, dtype))
    elif {"Imc1", "Imc2", "MCC"} & set(wanted):
        # The symmetric matrix as a list: every one-way pair (i, j) and its mirror (j, i).
        codes = torch.cat([li * base + lj, lj * base + li], -1)          # (V, 13, 2P)
        ok2 = torch.cat([ok, ok], -1)
        P = first.shape[1]
        total = 2 * nf                                                    # sum of the symmetric GLCM
        sc, sv, perm = _masked_sort(codes, ok2, sentinel)
        cell_counts, _ = _run_counts(sc, sv)
        if "JointEntropy" in wanted or "Imc1" in wanted or "Imc2" in wanted:
            hxy = _entropy_of_counts(cell_counts, total, dtype)
            if "JointEntropy" in wanted:
                out["JointEntropy"] = hxy
        if "JointEnergy" in wanted:
            p = cell_counts.to(dtype) / total.unsqueeze(-1)
            out["JointEnergy"] = (p ** 2).sum(-1)
        if "MaximumProbability" in wanted:
            out["MaximumProbability"] = cell_counts.max(-1).values.to(dtype) / total
        if {"Imc1", "Imc2", "MCC"} & set(wanted):
            # Row marginal px: runs of the row level i in the same sorted list.
            row = torch.where(sv, sc // base, torch.full_like(sc, sentinel))
            row_counts, row_run = _run_counts(row, sv)
            px = row_counts.to(dtype) / total.unsqueeze(-1)               # per distinct row level
            hx = -(px * torch.log2(px + EPS)).sum(-1)
            # px of the row and of the column level of every entry, back in list order; the column
            # level of entry e is the row level of its mirror, which sits P places away.
            px_sorted = torch.gather(px, -1, row_run)
            px_i = torch.empty_like(px_sorted).scatter_(-1, perm, px_sorted)
            px_j = torch.roll(px_i, P, dims=-1)
            if "Imc1" in wanted:
                hxy1 = -(torch.where(ok2, torch.log2(px_i * px_j + EPS), zero)).sum(-1) / total
                div = hx  # max(HX, HY) with HX == HY for a symmetric matrix
                imc1 = torch.where(div != 0, (hxy - hxy1) / torch.where(div != 0, div, torch.ones_like(div)),
                                   torch.zeros_like(div))
                out["Imc1"] = imc1
            if "Imc2" in wanted:
                # HXY2 = -sum over all (i, j) level pairs of px_i px_j log2(px_i px_j + eps), over the
                # L present row levels: built from the L distinct marginals.
                hxy2 = _hxy2(px)
                val = 1 - torch.exp(-2 * (hxy2 - hxy))
                # pyradiomics: (1 - e^..)^0.5, NaN when negative, and 0 where HXY2 == HXY. HXY2 == HXY
                # means independent rows and columns (zero mutual information), which small kernels
                # hit exactly with simple counts; HXY2 is summed here in another order than in
                # pyradiomics, so "equal" is taken to a few ulps, not bitwise.
                same = (hxy2 - hxy).abs() <= _SAME_ENTROPY_ULPS * EPS * hxy.abs().clamp(min=1)
                imc2 = torch.where(val < 0, torch.full_like(val, float("nan")), torch.sqrt(val.clamp(min=0)))
                imc2 = torch.where(same, torch.zeros_like(imc2), imc2)
                out["Imc2"] = imc2
            if "MCC" in wanted:
                out["MCC"] = _mcc(sv, row_counts, row_run, perm, P, total, dtype)
    return out, angle_ok


def _joint_cells_one_way(li, lj, ok, nf, base, sentinel, wanted, dtype):
    """JointEntropy, JointEnergy and MaximumProbability from the one-way pairs only (half the sort of
    the symmetric list): an unordered level pair {i, j} seen c times fills the symmetric matrix with
    two cells of count c (i != j) or one cell of count 2c (i == j)."""
    lo = torch.minimum(li, lj)
    hi = torch.maximum(li, lj)
    sc, sv, _ = _masked_sort(lo * base + hi, ok, sentinel)
    counts, run = _run_counts(sc, sv)
    # diagonal flag of each run (invalid entries write to the last slot, never a real run then)
    slot = torch.where(sv, run, torch.full_like(run, sc.shape[-1] - 1))
    diag_entry = sv & (sc // base == sc % base)
    diag = torch.zeros(sc.shape, dtype=torch.bool, device=sc.device).scatter_(-1, slot, diag_entry)
    diag = diag[..., :counts.shape[-1]]
    total = (2 * nf).unsqueeze(-1)
    p = torch.where(diag, 2 * counts, counts).to(dtype) / total      # probability of one cell
    cells = torch.where(diag, 1, 2).to(dtype)                        # cells with that probability
    out = {}
    if "JointEntropy" in wanted:
        out["JointEntropy"] = -(cells * p * torch.log2(p + EPS)).sum(-1)
    if "JointEnergy" in wanted:
        out["JointEnergy"] = (cells * p * p).sum(-1)
    if "MaximumProbability" in wanted:
        out["MaximumProbability"] = p.max(-1).values
    return out


def _hxy2(px: torch.Tensor) -> torch.Tensor:
    """HXY2 = -sum_{i,j} px_i px_j log2(px_i px_j + eps) over the L present levels (px: marginals of
    the distinct levels, zeros padded), in O(L): with sum px = 1 the double sum of u log2 u is
    2 sum px log2 px, and log2(u + eps) - log2(u) = eps / (u ln 2) to within (eps/u)^2 < 1e-20
    (u >= 1 / (2 x pairs)^2), which adds L^2 eps / ln 2."""
    present = px > 0
    L = present.sum(-1).to(px.dtype)
    plogp = torch.where(present, px * torch.log2(torch.where(present, px, torch.ones_like(px))),
                        torch.zeros_like(px)).sum(-1)
    return -(2 * plogp) - L * L * (EPS / math.log(2))


def _mcc(sv, row_counts, row_run, perm, P, total, dtype):
    """Maximal correlation coefficient per kernel and direction, as pyradiomics: the square root of
    the second largest eigenvalue of Q(i, j) = sum_k p(i, k) p(j, k) / (px_i py_k + eps), on the levels
    present in the kernel (absent levels only add exact zero eigenvalues).

    Entries of the sorted symmetric list (`sv` valid flags, `perm` their places in list order, P
    one-way pairs) carry the local index of their row level (its run among the row runs,
    `row_run`); the column level of an entry is the row level of its mirror, P places away in list
    order."""
    row_orig = torch.empty_like(row_run).scatter_(-1, perm, row_run)
    col_local = torch.gather(torch.roll(row_orig, P, dims=-1), -1, perm)
    nlev = (row_counts > 0).sum(-1)                                      # levels per matrix
    return _second_eigen_sqrt(row_run, col_local, sv, nlev, total, dtype)


def _second_eigen_sqrt(row_local, col_local, valid, nlev, total, dtype):
    """sqrt of the second largest eigenvalue of Q = D^-1 P D^-1 P (D = diag of the marginal px, P the
    normalised symmetric GLCM of one kernel and direction, given as a list of entries with local
    level indices), computed through T = D^-1/2 P D^-1/2: Q is similar to T^2, so lambda(Q) =
    lambda(T)^2, and T is symmetric (cheap, real eigenvalues). The largest eigenvalue of T is 1
    (eigenvector sqrt(px)); with 2 levels the other one is trace(T) - 1. pyradiomics adds eps to
    px_i py_k in Q; that changes Q by < 1e-11 relative (px >= 1 / (2 x pairs)), below the tolerance.
    Matrices are built and solved in groups of equal size (number of levels present), so that each
    is only as large as it needs to be."""
    lead = nlev.shape
    E = row_local.shape[-1]
    rows = row_local.reshape(-1, E)
    cols = col_local.reshape(-1, E)
    w = valid.reshape(-1, E).to(dtype)
    tot = total.reshape(-1)
    n = nlev.reshape(-1)
    out = torch.zeros(n.shape[0], dtype=dtype, device=rows.device)   # one level: 0
    for size in torch.unique(n[n > 1]).tolist():
        sel = torch.nonzero(n == size).squeeze(-1)
        P = torch.zeros(len(sel), size * size, dtype=dtype, device=rows.device)
        P.scatter_add_(1, rows[sel] * size + cols[sel], w[sel])
        P = P.reshape(-1, size, size) / tot[sel].reshape(-1, 1, 1)
        inv_sqrt = 1 / torch.sqrt(P.sum(-1))
        T = P * inv_sqrt.unsqueeze(-1) * inv_sqrt.unsqueeze(-2)
        if size == 2:
            out[sel] = (T[:, 0, 0] + T[:, 1, 1] - 1).abs()
        elif size == 3:
            # the two other eigenvalues a, b: a + b = trace - 1, a^2 + b^2 = |T|_F^2 - 1
            t = torch.diagonal(T, dim1=-2, dim2=-1).sum(-1) - 1
            f = (T * T).sum((-1, -2)) - 1
            out[sel] = (t.abs() + torch.sqrt((2 * f - t * t).clamp(min=0))) / 2
        else:
            ev = torch.linalg.eigvalsh(T)
            out[sel] = torch.sqrt(torch.sort(ev * ev, dim=-1).values[:, -2])
    return out.reshape(lead)
