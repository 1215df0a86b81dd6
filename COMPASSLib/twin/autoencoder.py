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
          batch_size, seed, device="cpu"):
    """Fit on standardised x (N, T, F) with observed mask; returns (model on CPU, loss per epoch)."""
    torch = _torch()
    torch.manual_seed(seed)
    model = build(x.shape[2], organ.shape[1], hidden_size, latent_size).to(device)
    valid = (np.arange(x.shape[1])[None, :] < lengths[:, None])[:, :, None] & observed
    xt = torch.as_tensor(x, device=device)
    mt = torch.as_tensor(valid.astype(np.float32), device=device)
    ot = torch.as_tensor(organ, dtype=torch.float32, device=device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    n = len(x)
    losses = []
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen).to(device)
        total = 0.0
        for start in range(0, n, batch_size):
            b = order[start:start + batch_size]
            _, rec = model(xt[b], ot[b])
            m = mt[b]
            loss = (((rec - xt[b]) ** 2) * m).sum() / m.sum().clamp_min(1.0)
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
