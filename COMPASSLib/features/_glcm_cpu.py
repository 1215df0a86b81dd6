"""Two GLCM steps compiled for the CPU (numba) that vectorised torch does poorly: the distinct level
pairs (GLCM cells) of each kernel and direction, and MCC's eigen-solves.

Private to `_texture_torch`, which keeps torch versions of both for CUDA and for CPUs without numba,
and computes every feature from what these return (one definition of each feature).

Distinct cells (`distinct_cells`): per row of pairs, the unordered level pairs seen and their
counts, by a table over the kernel's local codes (level - kernel minimum: at most (span + 1)^2
slots), touched slots reset after each row. The torch version sorts the pair codes (one sort per
kernel and direction, then counting runs): about 4 times the time.

MCC (`mcc`): one small symmetric eigenproblem per kernel and direction, tens of thousands per map.
Per kernel and direction, MCC is the largest |eigenvalue| of T (the GLCM normalised by its
marginals, T = D^-1/2 P D^-1/2) once its known top eigenpair (1, sqrt(px)) is deflated (see
`_texture_torch._second_eigen_sqrt` for the derivation). Batched LAPACK through torch (eigvalsh)
costs 1-30 us per matrix of 4-34 levels, most of it per-call and BLAS-2 overhead, and computes
every eigenvalue: at radius 2 and ~40 grey levels that was two thirds of a whole GLCM map. Here, in
one compiled loop: each matrix is built from its pairs, deflated, reduced to tridiagonal form
(Householder) and only its extreme eigenvalues are found (Laguerre's method from above the
spectrum, each iterate checked by a Sturm count; the bottom one only where a Sturm count says it
could be the larger in size). Matrices of equal size are solved LANES side by side, lane in the
last array axis, so that the compiler vectorises across them. Same definition and deflation as the
LAPACK path; values agree with LAPACK's (numpy's eigvalsh on the undeflated T) to ~1e-15 (tested).
"""
from __future__ import annotations

import math
import os
import sys
from collections import namedtuple
from pathlib import Path

import numpy as np


def _user_cache_folder() -> Path:
    """Where numba keeps its compiled loops when this package's folder is read-only (an installed
    Slicer extension in a macOS app bundle, a shared Windows install): the user's cache folder."""
    if os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "COMPASS" / "numba"


# numba reads NUMBA_CACHE_DIR once, at import: set it first, unless the user (or the Slicer module,
# which points it into Slicer's cache folder) did. Beside this file where it is writable, as before.
if "NUMBA_CACHE_DIR" not in os.environ and not os.access(Path(__file__).resolve().parent, os.W_OK):
    os.environ["NUMBA_CACHE_DIR"] = str(_user_cache_folder())

try:
    import numba
except ImportError:  # optional: texture maps fall back to their torch versions
    numba = None

# Laguerre stops once the certified bracket [x - m/G, x - 1/G] around the extreme eigenvalue is this
# narrow (eigenvalues of T lie in [-1, 1]); pyradiomics' own MCC is good to ~1e-8 (non-symmetric
# eigvals on Q = T^2).
_TOLERANCE = 1e-14
_MAX_STEPS = 200


def available() -> bool:
    """True where numba is installed (else texture maps use the torch versions of these steps)."""
    return numba is not None


def _distinct_loop(a, b, valid, width, counts, diag):
    """Per row r: the distinct unordered pairs {a, b} of its valid entries (levels in 0 .. width - 1)
    in order of first appearance: counts[r, :k] and diag[r, :k] (a == b), zeros after. Returns the
    largest k."""
    rows, pairs = a.shape
    seen = np.zeros(width * width, dtype=np.int64)          # 1 + slot of a code in this row; 0: new
    most = 0
    for r in range(rows):
        k = 0
        for q in range(pairs):
            if valid[r, q]:
                x = a[r, q]
                y = b[r, q]
                code = x * width + y if x <= y else y * width + x
                slot = seen[code]
                if slot == 0:
                    seen[code] = k + 1
                    counts[r, k] = 1
                    diag[r, k] = x == y
                    k += 1
                else:
                    counts[r, slot - 1] += 1
        for q in range(pairs):
            if valid[r, q]:
                x = a[r, q]
                y = b[r, q]
                seen[x * width + y if x <= y else y * width + x] = 0
        for q in range(k, pairs):
            counts[r, q] = 0
            diag[r, q] = False
        most = max(most, k)
    return most


def distinct_cells(a: np.ndarray, b: np.ndarray, valid: np.ndarray, width: int):
    """(counts (rows, K) int64, diag (rows, K) bool): the distinct unordered level pairs of each row
    of a, b (rows, pairs) int64 levels in 0 .. width - 1 where valid; K the most in any row."""
    rows, pairs = a.shape
    counts = np.empty((rows, pairs), dtype=np.int64)
    diag = np.empty((rows, pairs), dtype=np.bool_)
    most = _distinct_loop(np.ascontiguousarray(a), np.ascontiguousarray(b), np.ascontiguousarray(valid),
                          int(width), counts, diag)
    most = max(most, 1)
    return counts[:, :most], diag[:, :most]


# The one-way pairs of the matrices: levels rows[k, q], cols[k, q] (0 .. width - 1) where valid[k, q].
_Pairs = namedtuple("_Pairs", ("rows", "cols", "valid"))

# Laguerre's state per lane (all (L,) float64, flags 0.0 / 1.0): the iterate x, the certified bracket
# [lo, hi] of the extreme eigenvalue, the pivot recurrence (inv_q = 1 / q_i and q_i's first and
# second derivatives in x), G and H at x, whether every pivot was negative, and whether the lane is done.
_Laguerre = namedtuple("_Laguerre", ("x", "hi", "lo", "inv_q", "dq", "ddq", "g", "h", "negative", "done"))

# Scratch of _solve_lanes for matrices of up to `size` levels, lane b in the last axis of each array.
_Workspace = namedtuple("_Workspace", (
    "T",          # (size, size, L): the pair counts P, normalised in place to T = D^-1/2 P D^-1/2
    "block",      # (size, size, L): the deflated trailing block (lower triangle), tridiagonalised in place
    "scale",      # (size, L): 1 / sqrt(row sums of P)
    "total",      # (L,): the sum of P
    "u",          # (size, L): the deflating reflector sqrt(px) + e_1
    "z",          # (size, L): beta T u, then the update vector of H T H = T - u z^T - z u^T
    "diag",       # (size, L): diagonal of the tridiagonal form
    "off",        # (size, L): its off-diagonal
    "v",          # (size, L): the Householder vector of one tridiagonalisation step
    "p",          # (size, L): tau A v, then the update vector of that step
    "lane",       # (4, L): per-lane scalars of one step (named where they are used)
    "extremes",   # (4, L): top and bottom eigenvalue, active flags, Sturm pivots
    "laguerre",   # _Laguerre
    "lanes",      # (L,) int64: the matrix solved in each lane
    "slot",       # (width,) int64: a level's row in the matrix being built; -1 where none (left so)
))


def _workspace(size, L, width):
    """A _Workspace for matrices of up to `size` levels in L lanes, levels below `width`."""
    laguerre = _Laguerre(np.empty(L), np.empty(L), np.empty(L), np.empty(L), np.empty(L), np.empty(L),
                         np.empty(L), np.empty(L), np.empty(L), np.empty(L))
    return _Workspace(np.empty((size, size, L)), np.empty((size, size, L)), np.empty((size, L)), np.empty(L),
                      np.empty((size, L)), np.empty((size, L)), np.empty((size, L)), np.empty((size, L)),
                      np.empty((size, L)), np.empty((size, L)), np.empty((4, L)), np.empty((4, L)), laguerre,
                      np.empty(L, dtype=np.int64), np.full(width, -1, dtype=np.int64))


def _start_above_spectrum(diag, off, m, L, sign, active, state):
    """x = hi = just above the spectrum of sign x the tridiagonal matrix of each lane, lo = -inf;
    lanes not active are done at once."""
    x, hi, lo, done = state.x, state.hi, state.lo, state.done
    for b in range(L):
        hi[b] = -math.inf
    for i in range(m):
        for b in range(L):
            r = sign * diag[i, b]
            if i > 0:
                r += abs(off[i - 1, b])
            if i < m - 1:
                r += abs(off[i, b])
            hi[b] = max(hi[b], r)
    for b in range(L):
        # Gershgorin bound, or 1: the eigenvalues of T (and of its deflated blocks) lie in [-1, 1];
        # strictly above (by more than rounding) either way
        top = min(hi[b], 1.0)
        hi[b] = top + 1e-12 * max(1.0, abs(top))
        lo[b] = -math.inf
        x[b] = hi[b]
        done[b] = 0.0 if active[b] != 0.0 else 1.0


def _pivot_sums(diag, off, m, L, sign, state):
    """At each lane's x: G = sum_i q_i'/q_i and H = sum_i (q_i'/q_i)^2 - q_i''/q_i over the pivots q_i
    of the LDL^T factorisation of sign x T - x I, and whether every pivot is negative (a Sturm count:
    x above the spectrum)."""
    x, q, dq, ddq, g, h, ok = state.x, state.inv_q, state.dq, state.ddq, state.g, state.h, state.negative
    # pivots q_i and their derivatives in x by the recurrence q_i = d_i - x - e_(i-1)^2 / q_(i-1);
    # q holds 1 / q_i (one division per step)
    for b in range(L):
        q0 = sign * diag[0, b] - x[b]
        ok[b] = 1.0 if q0 < 0.0 else 0.0
        q[b] = 1.0 / q0
        dq[b] = -1.0
        ddq[b] = 0.0
        t = -q[b]
        g[b] = t
        h[b] = t * t
    for i in range(1, m):
        for b in range(L):
            e2 = off[i - 1, b] * off[i - 1, b]
            inv = q[b]
            nddq = e2 * inv * inv * (ddq[b] - 2.0 * dq[b] * dq[b] * inv)
            ndq = -1.0 + e2 * dq[b] * inv * inv
            nq = sign * diag[i, b] - x[b] - e2 * inv
            ok[b] = ok[b] if nq < 0.0 else 0.0
            ninv = 1.0 / nq
            t = ndq * ninv
            g[b] += t
            h[b] += t * t - nddq * ninv
            q[b] = ninv
            dq[b] = ndq
            ddq[b] = nddq


def _laguerre_update(m, L, state):
    """Narrow each running lane's bracket from its pivot sums and take its next Laguerre step (the
    bracket's middle where the step leaves it); a lane is done once its bracket is _TOLERANCE wide.
    Returns the number of lanes still running."""
    x, hi, lo, g, h, ok, done = state.x, state.hi, state.lo, state.g, state.h, state.negative, state.done
    running = 0
    for b in range(L):
        if done[b] != 0.0:
            continue
        if ok[b] != 0.0:
            hi[b] = x[b] - 1.0 / g[b]
            lo[b] = max(lo[b], x[b] - m / g[b])
            disc = (m - 1) * (m * h[b] - g[b] * g[b])
            step = x[b] - m / (g[b] + math.sqrt(disc if disc > 0.0 else 0.0))
            if step < lo[b] or step > hi[b]:
                step = 0.5 * (lo[b] + hi[b])
        else:
            lo[b] = max(lo[b], x[b])
            step = 0.5 * (lo[b] + hi[b])
        if hi[b] - lo[b] <= _TOLERANCE:
            done[b] = 1.0
        else:
            x[b] = step
            running += 1
    return running


def _extreme_lanes(diag, off, m, L, sign, active, res, state):
    """res[b] = largest eigenvalue of sign x the symmetric tridiagonal matrix of lane b (diagonal
    diag[:m, b], off-diagonal off[:m-1, b]) for the lanes with active[b] != 0, all lanes side by side.

    Laguerre's method from above the spectrum, where T - x I is negative definite: every pivot q_i
    of its LDL^T factorisation is then < 0 (checked each step: a Sturm count), and with
    G = f'/f = sum_i q_i'/q_i = sum_j 1 / (x - lambda_j) the top eigenvalue lies in
    [x - m/G, x - 1/G]. Laguerre's step x - m / (G + sqrt((m - 1)(m H - G^2))), H = sum_j
    1 / (x - lambda_j)^2, lands in that bracket and never below lambda_max; an iterate that fails
    the check (rounding, at the very end) lies at or below it and only raises the lower bound. A
    lane stops when its bracket is _TOLERANCE wide. `state`: a _Laguerre of scratch."""
    _start_above_spectrum(diag, off, m, L, sign, active, state)
    for _ in range(_MAX_STEPS):
        _pivot_sums(diag, off, m, L, sign, state)
        if _laguerre_update(m, L, state) == 0:
            break
    hi, lo = state.hi, state.lo
    for b in range(L):
        if active[b] != 0.0:
            res[b] = hi[b] if lo[b] == -math.inf else 0.5 * (lo[b] + hi[b])


# Matrices of one size are solved LANES at a time, lane b of each array in its last axis: the
# reductions and updates then run across lanes, independent problems side by side in vector
# registers (the matrices are too small to fill them along a row). Each lane does exactly the
# scalar operations of its own matrix, so a value does not depend on its neighbours.
LANES = 32
_LANE_BYTES = 16 * 2 ** 20


def _count_pairs(pairs, lanes, L, n, P, slot):
    """P[:n, :n, b] = the symmetric pair counts of matrix lanes[b] (each one-way pair and its mirror)
    for b < L; `slot` (-1 everywhere, and left so): scratch map of a level to its row."""
    rows, cols, valid = pairs.rows, pairs.cols, pairs.valid
    npairs = rows.shape[1]
    for i in range(n):
        for j in range(n):
            for b in range(L):
                P[i, j, b] = 0.0
    for b in range(L):
        # rows in order of first appearance: any order of the levels present has the same spectrum
        k = lanes[b]
        rank = 0
        for q in range(npairs):
            if valid[k, q]:
                la = rows[k, q]
                lb = cols[k, q]
                if slot[la] < 0:
                    slot[la] = rank
                    rank += 1
                if slot[lb] < 0:
                    slot[lb] = rank
                    rank += 1
                P[slot[la], slot[lb], b] += 1.0
                P[slot[lb], slot[la], b] += 1.0
        for q in range(npairs):
            slot[rows[k, q]] = -1
            slot[cols[k, q]] = -1


def _normalise(P, n, L, scale, total):
    """P -> T = D^-1/2 P D^-1/2 in place (the scale of P cancels: counts serve); scale = 1 / sqrt(row
    sums), total = the sum of P."""
    for b in range(L):
        total[b] = 0.0
    for i in range(n):
        for b in range(L):
            scale[i, b] = 0.0
        for j in range(n):
            for b in range(L):
                scale[i, b] += P[i, j, b]
        for b in range(L):
            total[b] += scale[i, b]
            scale[i, b] = 1.0 / math.sqrt(scale[i, b])
    for i in range(n):
        for j in range(n):
            for b in range(L):
                P[i, j, b] *= scale[i, b] * scale[j, b]


def _deflate_top_pair(T, n, L, scale, total, u, z, lane, block):
    """block[:n-1, :n-1] (lower triangle) = the trailing block of H T H.

    Deflate (1, sqrt(px)) by the reflection H = I - beta u u^T, u = sqrt(px) + e_1: H T H has
    first row and column (1, 0, ...) and its trailing block the other n - 1 eigenvalues."""
    sqrt_total, beta, u_dot_z = lane[0], lane[1], lane[2]
    for b in range(L):
        sqrt_total[b] = math.sqrt(total[b])
        beta[b] = 0.0                                       # u . u first
        u_dot_z[b] = 0.0
    for i in range(n):
        for b in range(L):
            u[i, b] = 1.0 / (scale[i, b] * sqrt_total[b])   # sqrt(px_i) = sqrt(rowsum_i / total)
    for b in range(L):
        u[0, b] += 1.0
    for i in range(n):
        for b in range(L):
            beta[b] += u[i, b] * u[i, b]
    for b in range(L):
        beta[b] = 2.0 / beta[b]
    for i in range(n):
        for b in range(L):
            z[i, b] = 0.0
        for j in range(n):
            for b in range(L):
                z[i, b] += T[i, j, b] * u[j, b]
        for b in range(L):
            z[i, b] *= beta[b]
            u_dot_z[b] += u[i, b] * z[i, b]
    for i in range(n):
        for b in range(L):
            z[i, b] -= 0.5 * beta[b] * u_dot_z[b] * u[i, b]
    for i in range(n - 1):
        for j in range(i + 1):                              # lower triangle: all that is read
            for b in range(L):
                block[i, j, b] = T[i + 1, j + 1, b] - u[i + 1, b] * z[j + 1, b] - z[i + 1, b] * u[j + 1, b]


def _largest_abs_2x2(A, lanes, L, out):
    """out[lanes[b]] = the largest |eigenvalue| of the symmetric 2 x 2 matrix A[:2, :2, b]."""
    for b in range(L):
        mean = 0.5 * (A[0, 0, b] + A[1, 1, b])
        half = 0.5 * (A[0, 0, b] - A[1, 1, b])
        out[lanes[b]] = abs(mean) + math.sqrt(half * half + A[1, 0, b] * A[1, 0, b])


def _householder_vector(A, k, m, L, diag, off, v, lane):
    """The reflection H = I - tau v v^T (tau = 0 where the column is zero already) that maps column k
    of A below the diagonal onto e_(k+1): diag[k], off[k] of the tridiagonal form, v[k+1:m] and tau
    (lane[1])."""
    norm2, tau = lane[0], lane[1]
    for b in range(L):
        norm2[b] = 0.0
    for i in range(k + 1, m):
        for b in range(L):
            norm2[b] += A[i, k, b] * A[i, k, b]
    for b in range(L):
        x1 = A[k + 1, k, b]
        norm = math.sqrt(norm2[b])
        alpha = -norm if x1 >= 0.0 else norm
        diag[k, b] = A[k, k, b]
        off[k, b] = alpha
        vv = norm2[b] - x1 * x1 + (x1 - alpha) * (x1 - alpha)
        tau[b] = 2.0 / vv if vv > 0.0 else 0.0
    for i in range(k + 1, m):
        for b in range(L):
            v[i, b] = A[i, k, b]
    for b in range(L):
        v[k + 1, b] -= off[k, b]


def _reflect_trailing_block(A, k, m, L, v, p, lane):
    """A[k+1:m, k+1:m] (lower triangle) -> H A H = A - v w^T - w v^T, p = tau A v,
    w = p - (tau / 2)(v . p) v, for the reflection of _householder_vector (tau in lane[1])."""
    tau, v_dot_p, row = lane[1], lane[2], lane[3]
    for b in range(L):
        v_dot_p[b] = 0.0
    for i in range(k + 1, m):
        for b in range(L):
            p[i, b] = 0.0
    for i in range(k + 1, m):
        for b in range(L):
            row[b] = A[i, i, b] * v[i, b]
        for j in range(k + 1, i):
            for b in range(L):
                aij = A[i, j, b]
                row[b] += aij * v[j, b]
                p[j, b] += aij * v[i, b]
        for b in range(L):
            p[i, b] += row[b]
    for i in range(k + 1, m):
        for b in range(L):
            p[i, b] *= tau[b]
            v_dot_p[b] += v[i, b] * p[i, b]
    for i in range(k + 1, m):
        for b in range(L):
            p[i, b] -= 0.5 * tau[b] * v_dot_p[b] * v[i, b]
    for i in range(k + 1, m):
        for j in range(k + 1, i + 1):
            for b in range(L):
                A[i, j, b] -= v[i, b] * p[j, b] + p[i, b] * v[j, b]


def _tridiagonalise(A, m, L, diag, off, v, p, lane):
    """diag[:m], off[:m-1] = the tridiagonal form of the symmetric A[:m, :m] (lower triangle, reduced
    in place): Householder reflections, column k below the diagonal mapped onto e_(k+1) by each."""
    for k in range(m - 2):
        _householder_vector(A, k, m, L, diag, off, v, lane)
        _reflect_trailing_block(A, k, m, L, v, p, lane)
    for b in range(L):
        diag[m - 2, b] = A[m - 2, m - 2, b]
        diag[m - 1, b] = A[m - 1, m - 1, b]
        off[m - 2, b] = A[m - 1, m - 2, b]


def _bottom_may_matter(diag, off, m, L, top, active, pivot):
    """active[b] = 1 where the bottom eigenvalue could lie below -|top[b]|, else 0.

    The bottom eigenvalue matters only below -|top|: one Sturm count tells (all pivots of
    T - x I positive at x = -|top|: every eigenvalue above it)."""
    for b in range(L):
        pivot[b] = diag[0, b] + abs(top[b])
        active[b] = 0.0 if pivot[b] > 0.0 else 1.0
    for i in range(1, m):
        for b in range(L):
            pivot[b] = diag[i, b] + abs(top[b]) - off[i - 1, b] * off[i - 1, b] / pivot[b]
            active[b] = active[b] if pivot[b] > 0.0 else 1.0


def _largest_abs_tridiagonal(diag, off, m, L, work, out):
    """out[lanes[b]] = the largest |eigenvalue| of the tridiagonal matrix of each lane: its top
    eigenvalue, and its bottom one only where that could be the larger in size."""
    top, bottom, active, pivot = work.extremes[0], work.extremes[1], work.extremes[2], work.extremes[3]
    for b in range(L):
        active[b] = 1.0
    _extreme_lanes(diag, off, m, L, 1.0, active, top, work.laguerre)
    _bottom_may_matter(diag, off, m, L, top, active, pivot)
    _extreme_lanes(diag, off, m, L, -1.0, active, bottom, work.laguerre)
    lanes = work.lanes
    for b in range(L):
        value = abs(top[b])
        if active[b] != 0.0:
            value = max(value, abs(bottom[b]))
        out[lanes[b]] = value


def _solve_lanes(pairs, L, n, out, work):
    """MCC of the L (<= LANES) matrices work.lanes[:L] (all with n >= 3 levels present) into out:
    each built from its pairs, normalised by its marginals, its known top eigenpair deflated, the
    rest reduced to tridiagonal form and its extreme eigenvalues found."""
    _count_pairs(pairs, work.lanes, L, n, work.T, work.slot)
    _normalise(work.T, n, L, work.scale, work.total)
    _deflate_top_pair(work.T, n, L, work.scale, work.total, work.u, work.z, work.lane, work.block)
    m = n - 1
    if m == 2:
        _largest_abs_2x2(work.block, work.lanes, L, out)
        return
    _tridiagonalise(work.block, m, L, work.diag, work.off, work.v, work.p, work.lane)
    _largest_abs_tridiagonal(work.diag, work.off, m, L, work, out)


def _mcc_two_levels(pairs, k):
    """MCC of matrix k with two levels: the other eigenvalue of T is trace(T) - 1 = P_00 / r_0 +
    P_11 / r_1 - 1 (level 0: the first one seen paired with itself)."""
    rows, cols, valid = pairs.rows, pairs.cols, pairs.valid
    p00 = 0.0
    p11 = 0.0
    p01 = 0.0
    first = -1
    for q in range(rows.shape[1]):
        if valid[k, q]:
            if rows[k, q] != cols[k, q]:
                p01 += 1.0
            else:
                if first < 0:
                    first = rows[k, q]
                if rows[k, q] == first:
                    p00 += 2.0
                else:
                    p11 += 2.0
    return abs(p00 / (p00 + p01) + p11 / (p11 + p01) - 1.0)


def _settle_small(pairs, nlev, unit, out):
    """out[k] for the matrices that need no eigen-solve (graph-known ones, one or two levels); returns
    the size of each of the others (0 for those settled)."""
    count = pairs.rows.shape[0]
    solve = np.zeros(count, dtype=np.int64)
    for k in range(count):
        n = nlev[k]
        if unit[k]:
            out[k] = 1.0
        elif n < 2:
            out[k] = 0.0
        elif n == 2:
            out[k] = _mcc_two_levels(pairs, k)
        else:
            solve[k] = n
    return solve


def _mcc_loop(rows, cols, valid, nlev, unit, width, out):
    """out[k] = MCC of matrix k, given by its one-way pairs: the levels rows[k], cols[k] (each in
    0 .. width - 1: grey level minus the kernel's lowest) where valid[k], nlev[k] distinct levels
    among them; 1 where unit[k] (known from the pair graph); 0 for one level."""
    pairs = _Pairs(rows, cols, valid)
    count = rows.shape[0]
    size = 3
    for k in range(count):
        size = max(size, nlev[k])
    # fewer lanes for very large matrices (kernels spanning hundreds of levels): T and block stay
    # within _LANE_BYTES each
    L = max(1, min(LANES, _LANE_BYTES // (size * size * 8)))
    work = _workspace(size, L, width)
    # one or two levels and the graph-known ones at once; the rest by size, LANES at a time
    solve = _settle_small(pairs, nlev, unit, out)
    order = np.argsort(solve, kind="mergesort")
    at = 0
    while at < count and solve[order[at]] == 0:
        at += 1
    while at < count:
        n = solve[order[at]]
        stop = at
        while stop < count and solve[order[stop]] == n:
            stop += 1
        for first in range(at, stop, L):
            lanes = min(L, stop - first)
            for b in range(lanes):
                work.lanes[b] = order[first + b]
            _solve_lanes(pairs, lanes, n, out, work)
        at = stop


if numba is not None:
    _jit = numba.njit(nogil=True, cache=True, error_model="numpy")
    _distinct_loop = _jit(_distinct_loop)
    _workspace = _jit(_workspace)
    _start_above_spectrum = _jit(_start_above_spectrum)
    _pivot_sums = _jit(_pivot_sums)
    _laguerre_update = _jit(_laguerre_update)
    _extreme_lanes = _jit(_extreme_lanes)
    _count_pairs = _jit(_count_pairs)
    _normalise = _jit(_normalise)
    _deflate_top_pair = _jit(_deflate_top_pair)
    _largest_abs_2x2 = _jit(_largest_abs_2x2)
    _householder_vector = _jit(_householder_vector)
    _reflect_trailing_block = _jit(_reflect_trailing_block)
    _tridiagonalise = _jit(_tridiagonalise)
    _bottom_may_matter = _jit(_bottom_may_matter)
    _largest_abs_tridiagonal = _jit(_largest_abs_tridiagonal)
    _solve_lanes = _jit(_solve_lanes)
    _mcc_two_levels = _jit(_mcc_two_levels)
    _settle_small = _jit(_settle_small)
    _mcc_loop = _jit(_mcc_loop)


def mcc(rows: np.ndarray, cols: np.ndarray, valid: np.ndarray, nlev: np.ndarray, unit: np.ndarray,
        width: int) -> np.ndarray:
    """MCC of each matrix (see _mcc_loop): rows, cols (count, pairs) int64 levels in 0 .. width - 1,
    valid (count, pairs) bool, nlev (count,) int64, unit (count,) bool."""
    out = np.empty(rows.shape[0])
    _mcc_loop(np.ascontiguousarray(rows), np.ascontiguousarray(cols), np.ascontiguousarray(valid),
              np.ascontiguousarray(nlev), np.ascontiguousarray(unit), int(width), out)
    return out
