"""GRU autoencoder: the encoder turns a feature trajectory into a latent trajectory (the latent state
after each fraction k sees fractions 1..k only: a unidirectional GRU is causal), the decoder GRU
rebuilds the features from the latent trajectory. Trained on a masked MSE (padding and missing values
carry no loss). The organ enters as a one-hot code beside the features (an organ embedding learned by
the first GRU layer), so one network can serve all organs.
"""
from __future__ import annotations

import numpy as np


def _torch():
    import torch

    return torch


def build(n_features, n_organs, hidden_size, latent_size):
    torch = _torch()
    nn = torch.nn

    class GRUAutoencoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.GRU(n_features + n_organs, hidden_size, batch_first=True)
            self.to_latent = nn.Linear(hidden_size, latent_size)
            self.decoder = nn.GRU(latent_size + n_organs, hidden_size, batch_first=True)
            self.to_features = nn.Linear(hidden_size, n_features)

        def encode(self, x, organ):
            """x (N, T, F), organ (N, K) -> latent trajectory (N, T, L)."""
            o = organ[:, None, :].expand(-1, x.shape[1], -1)
            h, _ = self.encoder(torch.cat([x, o], dim=2))
            return self.to_latent(h)

        def forward(self, x, organ):
            z = self.encode(x, organ)
            o = organ[:, None, :].expand(-1, x.shape[1], -1)
            d, _ = self.decoder(torch.cat([z, o], dim=2))
            return z, self.to_features(d)

    return GRUAutoencoder()


def shape_of(state_dict):
    """(n_features, n_organs, hidden_size, latent_size) read back from saved weights."""
    hidden = state_dict["encoder.weight_hh_l0"].shape[1]
    n_in = state_dict["encoder.weight_ih_l0"].shape[1]
    latent = state_dict["to_latent.weight"].shape[0]
    n_features = state_dict["to_features.weight"].shape[0]
    return n_features, n_in - n_features, hidden, latent


def train(x, observed, lengths, organ, *, hidden_size, latent_size, epochs, lr, weight_decay,
          batch_size, seed, device="cpu", labels=None, supervision=0.0, feature_weights=None):
    """Fit on standardised x (N, T, F) with observed mask; returns (model on CPU, loss per epoch).

    `feature_weights` (F,): each feature's share of the reconstruction loss (default equal), so a block
    of many correlated radiomics columns cannot drown a few kinetics columns. `supervision` > 0 with
    `labels` (N,) adds a logistic head on the latent state after every fraction (binary cross-entropy,
    each trajectory one vote, as the classifier later weights it): the latent then keeps what predicts
    the outcome, not only what varies most. The head is dropped after training (the classifier is
    refitted on the latent), so the saved model is the same autoencoder."""
    torch = _torch()
    torch.manual_seed(seed)
    model = build(x.shape[2], organ.shape[1], hidden_size, latent_size).to(device)
    supervised = labels is not None and supervision > 0
    head = torch.nn.Linear(latent_size + organ.shape[1], 1).to(device) if supervised else None
    valid = (np.arange(x.shape[1])[None, :] < lengths[:, None])[:, :, None] & observed
    weights = np.ones(x.shape[2]) if feature_weights is None else np.asarray(feature_weights, float)
    xt = torch.as_tensor(x, device=device)
    vt = torch.as_tensor(valid.astype(np.float32), device=device)
    mt = vt * torch.as_tensor((weights * len(weights) / weights.sum()).astype(np.float32), device=device)
    ot = torch.as_tensor(organ, dtype=torch.float32, device=device)
    steps = torch.as_tensor((np.arange(x.shape[1])[None, :] < lengths[:, None]) / lengths[:, None],
                            dtype=torch.float32, device=device)          # 1/length on valid steps
    yt = torch.as_tensor(np.asarray(labels if supervised else np.zeros(len(x)), np.float32), device=device)
    params = list(model.parameters()) + (list(head.parameters()) if supervised else [])
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    n = len(x)
    losses = []
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen).to(device)
        total = 0.0
        for start in range(0, n, batch_size):
            b = order[start:start + batch_size]
            z, rec = model(xt[b], ot[b])
            m = mt[b]
            loss = (((rec - xt[b]) ** 2) * m).sum() / vt[b].sum().clamp_min(1.0)
            if supervised:
                o = ot[b][:, None, :].expand(-1, z.shape[1], -1)
                logit = head(torch.cat([z, o], dim=2))[:, :, 0]
                bce = torch.nn.functional.binary_cross_entropy_with_logits(
                    logit, yt[b][:, None].expand_as(logit), weight=steps[b], reduction="sum") / len(b)
                loss = loss + supervision * bce
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        losses.append(total / max(n, 1))
    return model.cpu().eval(), losses


def latent(model, x, organ):
    """Latent trajectory (N, T, L) as numpy, no gradients."""
    torch = _torch()
    with torch.no_grad():
        return model.encode(torch.as_tensor(x), torch.as_tensor(organ, dtype=torch.float32)).numpy()
