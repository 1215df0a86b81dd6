"""Which features (and fractions) drive the risk after fraction k: integrated gradients of the
classifier's logit through the encoder, with respect to the standardised inputs of fractions 1..k.

The baseline is the all-zero input (the training mean of every feature) with the organ code kept, so
the attributions of one state add up to logit(risk) - logit(risk of an average trajectory of that
organ) (IG's completeness, up to the Riemann sum's error). A feature's contribution is the sum over
fractions; the fraction shown beside it is the one contributing most to it.
"""
from __future__ import annotations

import numpy as np


def integrated_gradients(ae, clf, x, onehot, steps=16, chunk=256):
    """Attributions (N, T_k, T_j, F): of the logit after step k to input step j, feature f."""
    import torch

    n_latent = ae.to_latent.out_features
    w = torch.as_tensor(clf.coef_[:n_latent] / clf.std_[:n_latent], dtype=torch.float32)
    alphas = (torch.arange(steps, dtype=torch.float32) + 0.5) / steps   # midpoint rule
    N, T, F = x.shape
    out = np.zeros((N, T, T, F), dtype=np.float32)
    for s in range(0, N, chunk):
        xb = torch.as_tensor(x[s:s + chunk])
        ob = torch.as_tensor(onehot[s:s + chunk], dtype=torch.float32)
        n = len(xb)
        xi = (alphas[:, None, None, None] * xb[None]).reshape(steps * n, T, F).requires_grad_(True)
        logit = ae.encode(xi, ob.repeat(steps, 1)) @ w          # (S*n, T); the organ part is constant
        for k in range(T):
            (g,) = torch.autograd.grad(logit[:, k].sum(), xi, retain_graph=k < T - 1)
            out[s:s + n, k] = (xb * g.reshape(steps, n, T, F).mean(0)).detach().numpy()
    return out


def top_contributors(ae, clf, x, onehot, lengths, fractions, columns, steps=16, top_k=3):
    """{(trajectory i, step k): 'feature@F<fraction>:+0.123; ...'} (logit units, largest |value| first)."""
    ig = integrated_gradients(ae, clf, x, onehot, steps)
    tops = {}
    for i in range(len(x)):
        for k in range(int(lengths[i])):
            a = ig[i, k, : k + 1]                  # (fractions 1..k, F): causal, later steps get 0
            total = a.sum(axis=0)
            order = np.argsort(-np.abs(total), kind="stable")[:top_k]
            tops[(i, k)] = "; ".join(
                f"{columns[f]}@F{int(fractions[i, int(np.argmax(np.abs(a[:, f])))])}:{total[f]:+.3f}"
                for f in order)
    return tops
