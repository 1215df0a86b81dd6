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

import numpy as np

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


def _extreme_lanes(d, e, m, L, sign, active, res, w):
    """res[b] = largest eigenvalue of sign x the symmetric tridiagonal matrix of lane b (diagonal
    d[:m, b], off-diagonal e[:m-1, b]) for the lanes with active[b] != 0, all lanes side by side.

    Laguerre's method from above the spectrum, where T - x I is negative definite: every pivot q_i
    of its LDL^T factorisation is then < 0 (checked each step: a Sturm count), and with
    G = f'/f = sum_i q_i'/q_i = sum_j 1 / (x - lambda_j) the top eigenvalue lies in
    [x - m/G, x - 1/G]. Laguerre's step x - m / (G + sqrt((m - 1)(m H - G^2))), H = sum_j
    1 / (x - lambda_j)^2, lands in that bracket and never below lambda_max; an iterate that fails
    the check (rounding, at the very end) lies at or below it and only raises the lower bound. A
    lane stops when its bracket is _TOLERANCE wide."""
    x, hi, lo, q, dq, ddq, g, h, ok, done = w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8], w[9]
    for b in range(L):
        hi[b] = -math.inf
    for i in range(m):
        for b in range(L):
            r = sign * d[i, b]
            if i > 0:
                r += abs(e[i - 1, b])
            if i < m - 1:
                r += abs(e[i, b])
            hi[b] = max(hi[b], r)
    for b in range(L):
        # Gershgorin bound, or 1: the eigenvalues of T (and of its deflated blocks) lie in [-1, 1];
        # strictly above (by more than rounding) either way
        top = min(hi[b], 1.0)
        hi[b] = top + 1e-12 * max(1.0, abs(top))
        lo[b] = -math.inf
        x[b] = hi[b]
        done[b] = 0.0 if active[b] != 0.0 else 1.0
    for _ in range(_MAX_STEPS):
        # pivots q_i and their derivatives in x by the recurrence q_i = d_i - x - e_(i-1)^2 / q_(i-1);
        # q holds 1 / q_i (one division per step)
        for b in range(L):
            q0 = sign * d[0, b] - x[b]
            ok[b] = 1.0 if q0 < 0.0 else 0.0
            q[b] = 1.0 / q0
            dq[b] = -1.0
            ddq[b] = 0.0
            t = -q[b]
            g[b] = t
            h[b] = t * t
        for i in range(1, m):
            for b in range(L):
                e2 = e[i - 1, b] * e[i - 1, b]
                inv = q[b]
                nddq = e2 * inv * inv * (ddq[b] - 2.0 * dq[b] * dq[b] * inv)
                ndq = -1.0 + e2 * dq[b] * inv * inv
                nq = sign * d[i, b] - x[b] - e2 * inv
                ok[b] = ok[b] if nq < 0.0 else 0.0
                ninv = 1.0 / nq
                t = ndq * ninv
                g[b] += t
                h[b] += t * t - nddq * ninv
                q[b] = ninv
                dq[b] = ndq
                ddq[b] = nddq
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
        if running == 0:
            break
    for b in range(L):
        if active[b] != 0.0:
            res[b] = hi[b] if lo[b] == -math.inf else 0.5 * (lo[b] + hi[b])


# Matrices of one size are solved LANES at a time, lane b of each array in its last axis: the
# reductions and updates then run across lanes, independent problems side by side in vector
# registers (the matrices are too small to fill them along a row). Each lane does exactly the
# scalar operations of its own matrix, so a value does not depend on its neighbours.
LANES = 32
_LANE_BYTES = 16 * 2 ** 20


def _solve_lanes(rows, cols, valid, index, L, n, out, P, A, s, u, z, d, e, v, p, t, w, ext, slot):
    """MCC of the L (<= LANES) matrices index[:L] (all with n >= 3 levels present) into out.
    `slot` (-1 everywhere, and left so): scratch map of a level to its row in the matrix."""
    pairs = rows.shape[1]
    for i in range(n):
        for j in range(n):
            for b in range(L):
                P[i, j, b] = 0.0
    for b in range(L):
        # rows in order of first appearance: any order of the levels present has the same spectrum
        k = index[b]
        rank = 0
        for q in range(pairs):
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
        for q in range(pairs):
            slot[rows[k, q]] = -1
            slot[cols[k, q]] = -1
    # T = D^-1/2 P D^-1/2 (the scale of P cancels: counts serve), s = 1 / sqrt(row sums)
    for b in range(L):
        t[0, b] = 0.0
    for i in range(n):
        for b in range(L):
            s[i, b] = 0.0
        for j in range(n):
            for b in range(L):
                s[i, b] += P[i, j, b]
        for b in range(L):
            t[0, b] += s[i, b]
            s[i, b] = 1.0 / math.sqrt(s[i, b])
    for i in range(n):
        for j in range(n):
            for b in range(L):
                P[i, j, b] *= s[i, b] * s[j, b]
    # Deflate (1, sqrt(px)) by the reflection H = I - beta u u^T, u = sqrt(px) + e_1: H T H has
    # first row and column (1, 0, ...) and its trailing block the other n - 1 eigenvalues.
    for b in range(L):
        t[0, b] = math.sqrt(t[0, b])                        # sqrt(total)
        t[1, b] = 0.0                                       # u . u
        t[2, b] = 0.0                                       # u . T u
    for i in range(n):
        for b in range(L):
            u[i, b] = 1.0 / (s[i, b] * t[0, b])             # sqrt(px_i) = sqrt(rowsum_i / total)
    for b in range(L):
        u[0, b] += 1.0
    for i in range(n):
        for b in range(L):
            t[1, b] += u[i, b] * u[i, b]
    for b in range(L):
        t[1, b] = 2.0 / t[1, b]                             # beta
    for i in range(n):
        for b in range(L):
            z[i, b] = 0.0
        for j in range(n):
            for b in range(L):
                z[i, b] += P[i, j, b] * u[j, b]
        for b in range(L):
            z[i, b] *= t[1, b]
            t[2, b] += u[i, b] * z[i, b]
    for i in range(n):
        for b in range(L):
            z[i, b] -= 0.5 * t[1, b] * t[2, b] * u[i, b]
    m = n - 1
    for i in range(m):
        for j in range(i + 1):                              # lower triangle: all that is read
            for b in range(L):
                A[i, j, b] = P[i + 1, j + 1, b] - u[i + 1, b] * z[j + 1, b] - z[i + 1, b] * u[j + 1, b]
    if m == 2:
        for b in range(L):
            mean = 0.5 * (A[0, 0, b] + A[1, 1, b])
            half = 0.5 * (A[0, 0, b] - A[1, 1, b])
            out[index[b]] = abs(mean) + math.sqrt(half * half + A[1, 0, b] * A[1, 0, b])
        return
    # Householder tridiagonalisation on the lower triangle: column k below the diagonal is mapped
    # onto e_(k+1) by H = I - tau v v^T (tau = 0 where it is zero already), and the trailing block
    # becomes H A H = A - v w^T - w v^T with p = tau A v, w = p - (tau / 2)(v . p) v.
    for k in range(m - 2):
        for b in range(L):
            t[0, b] = 0.0
        for i in range(k + 1, m):
            for b in range(L):
                t[0, b] += A[i, k, b] * A[i, k, b]
        for b in range(L):
            x1 = A[k + 1, k, b]
            norm = math.sqrt(t[0, b])
            alpha = -norm if x1 >= 0.0 else norm
            d[k, b] = A[k, k, b]
            e[k, b] = alpha
            vv = t[0, b] - x1 * x1 + (x1 - alpha) * (x1 - alpha)
            t[1, b] = 2.0 / vv if vv > 0.0 else 0.0         # tau
            t[2, b] = 0.0                                   # v . p
        for i in range(k + 1, m):
            for b in range(L):
                v[i, b] = A[i, k, b]
                p[i, b] = 0.0
        for b in range(L):
            v[k + 1, b] -= e[k, b]
        for i in range(k + 1, m):
            for b in range(L):
                t[3, b] = A[i, i, b] * v[i, b]
            for j in range(k + 1, i):
                for b in range(L):
                    aij = A[i, j, b]
                    t[3, b] += aij * v[j, b]
                    p[j, b] += aij * v[i, b]
            for b in range(L):
                p[i, b] += t[3, b]
        for i in range(k + 1, m):
            for b in range(L):
                p[i, b] *= t[1, b]
                t[2, b] += v[i, b] * p[i, b]
        for i in range(k + 1, m):
            for b in range(L):
                p[i, b] -= 0.5 * t[1, b] * t[2, b] * v[i, b]
        for i in range(k + 1, m):
            for j in range(k + 1, i + 1):
                for b in range(L):
                    A[i, j, b] -= v[i, b] * p[j, b] + p[i, b] * v[j, b]
    for b in range(L):
        d[m - 2, b] = A[m - 2, m - 2, b]
        d[m - 1, b] = A[m - 1, m - 1, b]
        e[m - 2, b] = A[m - 1, m - 2, b]
    top, bottom, active, q = ext[0], ext[1], ext[2], ext[3]
    for b in range(L):
        active[b] = 1.0
    _extreme_lanes(d, e, m, L, 1.0, active, top, w)
    # The bottom eigenvalue matters only below -|top|: one Sturm count tells (all pivots of
    # T - x I positive at x = -|top|: every eigenvalue above it).
    for b in range(L):
        q[b] = d[0, b] + abs(top[b])
        active[b] = 0.0 if q[b] > 0.0 else 1.0
    for i in range(1, m):
        for b in range(L):
            q[b] = d[i, b] + abs(top[b]) - e[i - 1, b] * e[i - 1, b] / q[b]
            active[b] = active[b] if q[b] > 0.0 else 1.0
    _extreme_lanes(d, e, m, L, -1.0, active, bottom, w)
    for b in range(L):
        value = abs(top[b])
        if active[b] != 0.0:
            value = max(value, abs(bottom[b]))
        out[index[b]] = value


def _mcc_loop(rows, cols, valid, nlev, unit, width, out):
    """out[k] = MCC of matrix k, given by its one-way pairs: the levels rows[k], cols[k] (each in
    0 .. width - 1: grey level minus the kernel's lowest) where valid[k], nlev[k] distinct levels
    among them; 1 where unit[k] (known from the pair graph); 0 for one level."""
    count, pairs = rows.shape
    size = 3
    for k in range(count):
        size = max(size, nlev[k])
    # fewer lanes for very large matrices (kernels spanning hundreds of levels): P and A stay
    # within _LANE_BYTES each
    L = max(1, min(LANES, _LANE_BYTES // (size * size * 8)))
    P = np.empty((size, size, L))
    A = np.empty((size, size, L))
    s = np.empty((size, L))
    u = np.empty((size, L))
    z = np.empty((size, L))
    d = np.empty((size, L))
    e = np.empty((size, L))
    v = np.empty((size, L))
    p = np.empty((size, L))
    t = np.empty((4, L))
    w = np.empty((10, L))
    ext = np.empty((4, L))
    index = np.empty(L, dtype=np.int64)
    slot = np.full(width, -1, dtype=np.int64)
    # one or two levels and the graph-known ones at once; the rest by size, LANES at a time
    solve = np.zeros(count, dtype=np.int64)
    for k in range(count):
        n = nlev[k]
        if unit[k]:
            out[k] = 1.0
        elif n < 2:
            out[k] = 0.0
        elif n == 2:
            # the other eigenvalue of T is trace(T) - 1 = P_00 / r_0 + P_11 / r_1 - 1 (level 0: the
            # first one seen paired with itself)
            p00 = 0.0
            p11 = 0.0
            p01 = 0.0
            first = -1
            for q in range(pairs):
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
            out[k] = abs(p00 / (p00 + p01) + p11 / (p11 + p01) - 1.0)
        else:
            solve[k] = n
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
                index[b] = order[first + b]
            _solve_lanes(rows, cols, valid, index, lanes, n, out, P, A, s, u, z, d, e, v, p, t, w, ext, slot)
        at = stop


if numba is not None:
    _jit = numba.njit(nogil=True, cache=True, error_model="numpy")
    _distinct_loop = _jit(_distinct_loop)
    _extreme_lanes = _jit(_extreme_lanes)
    _solve_lanes = _jit(_solve_lanes)
    _mcc_loop = _jit(_mcc_loop)


def mcc(rows: np.ndarray, cols: np.ndarray, valid: np.ndarray, nlev: np.ndarray, unit: np.ndarray,
        width: int) -> np.ndarray:
    """MCC of each matrix (see _mcc_loop): rows, cols (count, pairs) int64 levels in 0 .. width - 1,
    valid (count, pairs) bool, nlev (count,) int64, unit (count,) bool."""
    out = np.empty(rows.shape[0])
    _mcc_loop(np.ascontiguousarray(rows), np.ascontiguousarray(cols), np.ascontiguousarray(valid),
              np.ascontiguousarray(nlev), np.ascontiguousarray(unit), int(width), out)
    return out
