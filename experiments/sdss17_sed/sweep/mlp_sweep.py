"""MLP variants on the SDSS17 train part, scored on the validation part only (run on a GPU, works on a CPU).

    TAG=A python mlp_sweep.py [configs.json]   # default: the first round of variants (CONFIGS)

Each config is ``[name, options, seeds]``. Inputs are standardised with the training part's mean and standard
deviation (or median and IQR) and clipped to ±8; optional numerical embeddings: piecewise-linear encoding on
training quantiles (``ple``) or learned periodic features (``periodic``). AdamW, 3% warm-up then a per-step cosine,
gradients clipped at 1; ``best`` is the epoch with the lowest validation loss, ``last`` the last. Reads
``sweep_arrays.npz`` beside this file; writes the validation probabilities to ``$OUT/mlp_probs<TAG>.npz``.
"""

import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from torch import nn

OUT = Path(os.environ.get("OUT", "/tmp/sdss17_sweep"))
DEV = "cuda" if torch.cuda.is_available() else "cpu"
D = np.load(Path(__file__).with_name("sweep_arrays.npz"))
Xtr, ytr, Xva, yva = D["train_x"], D["train_y"], D["val_x"], D["val_y"]
MED = np.median(Xtr, 0)
IQR = np.subtract(*np.percentile(Xtr, [75, 25], 0)) / 1.349
MU, SD = Xtr.mean(0), Xtr.std(0)


def prep(x: np.ndarray, kind: str) -> np.ndarray:
    if kind == "robust":
        return np.clip((x - MED) / IQR, -8, 8).astype(np.float32)
    return np.clip((x - MU) / SD, -8, 8).astype(np.float32)


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    return float(f1_score(y, pred, labels=[0, 1, 2], average="macro", zero_division=0))


class PLE(nn.Module):
    """Piecewise-linear encoding of each feature on ``n_bins`` training-quantile bins."""

    def __init__(self, xtr: np.ndarray, n_bins: int):
        super().__init__()
        qs = np.quantile(xtr, np.linspace(0, 1, n_bins + 1), axis=0).T
        qs = np.maximum.accumulate(qs + np.arange(n_bins + 1) * 1e-6, axis=1)
        self.register_buffer("lo", torch.tensor(qs[:, :-1], dtype=torch.float32))
        self.register_buffer("w", torch.tensor(np.diff(qs, axis=1), dtype=torch.float32))
        self.out = xtr.shape[1] * n_bins

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = (x[:, :, None] - self.lo) / self.w
        t = torch.cat([t[..., :1].clamp(max=1), t[..., 1:-1].clamp(0, 1), t[..., -1:].clamp(min=0)], -1)
        return t.flatten(1)


class Periodic(nn.Module):
    """Learned periodic features per input (sin, cos of k frequencies), then a per-feature linear layer and ReLU."""

    def __init__(self, nf: int, k: int = 16, sigma: float = 0.1, d: int = 16):
        super().__init__()
        self.c = nn.Parameter(torch.randn(nf, k) * sigma)
        self.w = nn.Parameter(torch.randn(nf, 2 * k, d) / math.sqrt(2 * k))
        self.b = nn.Parameter(torch.zeros(nf, d))
        self.out = nf * d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = 2 * math.pi * x[:, :, None] * self.c
        v = torch.cat([torch.sin(v), torch.cos(v)], -1)
        return F.relu(torch.einsum("bfk,fkd->bfd", v, self.w) + self.b).flatten(1)


def build(cfg: dict, xtr: np.ndarray) -> nn.Module:
    emb: nn.Module | None = None
    n_in = xtr.shape[1]
    if cfg.get("emb") == "ple":
        emb = PLE(xtr, cfg.get("bins", 32))
        n_in = emb.out
    elif cfg.get("emb") == "periodic":
        emb = Periodic(xtr.shape[1], cfg.get("k", 16), cfg.get("sigma", 0.1), cfg.get("d", 16))
        n_in = emb.out
    layers: list[nn.Module] = []
    for width in cfg["hidden"]:
        layers += [nn.Linear(n_in, width), nn.GELU(), nn.Dropout(cfg.get("dropout", 0.1))]
        n_in = width
    layers.append(nn.Linear(n_in, 3))
    net = nn.Sequential(*layers)
    return nn.Sequential(emb, net) if emb is not None else net


def run(cfg: dict, seed: int) -> tuple[float, np.ndarray, int, np.ndarray]:
    torch.manual_seed(seed)
    xtr, xva = prep(Xtr, cfg.get("scale", "std")), prep(Xva, cfg.get("scale", "std"))
    model = build(cfg, xtr).to(DEV)
    xt, yt = torch.tensor(xtr, device=DEV), torch.tensor(ytr, device=DEV, dtype=torch.long)
    xv = torch.tensor(xva, device=DEV)
    bs, epochs = cfg.get("bs", 512), cfg.get("epochs", 60)
    steps = epochs * math.ceil(len(xt) / bs)
    warm = max(int(0.03 * steps), 1)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.get("lr", 2e-3), weight_decay=cfg.get("wd", 1e-4))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    best_loss, best_p, best_epoch = math.inf, None, -1
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=gen).to(DEV)
        for i in range(0, len(xt), bs):
            idx = perm[i : i + bs]
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            p = torch.softmax(model(xv), 1).cpu().numpy()
        val_loss = float(-np.log(np.clip(p[np.arange(len(yva)), yva], 1e-12, 1)).mean())
        if val_loss < best_loss:
            best_loss, best_p, best_epoch = val_loss, p, epoch
    assert best_p is not None
    return best_loss, best_p, best_epoch, p


CONFIGS = [
    ["cur", {"hidden": [256, 256, 128, 64], "lr": 3e-3, "epochs": 30, "bs": 256}, [1]],
    ["w256x3_e100", {"hidden": [256, 256, 256], "lr": 2e-3, "epochs": 100}, [1, 2, 3, 4, 5]],
    ["w512x3_e100_d2", {"hidden": [512, 512, 512], "lr": 1e-3, "epochs": 100, "dropout": 0.2}, [1]],
    ["w256x3_robust", {"hidden": [256, 256, 256], "lr": 2e-3, "epochs": 100, "scale": "robust"}, [1]],
    ["w256x3_e300", {"hidden": [256, 256, 256], "lr": 2e-3, "epochs": 300, "bs": 1024}, [1]],
    ["w1024x3_e200", {"hidden": [1024] * 3, "lr": 5e-4, "epochs": 200, "dropout": 0.3, "bs": 1024}, [1]],
    ["ple32", {"hidden": [256] * 3, "lr": 1e-3, "epochs": 60, "emb": "ple", "bins": 32, "dropout": 0.2}, [1, 2, 3]],
    ["ple32", {"hidden": [256] * 3, "lr": 1e-3, "epochs": 60, "emb": "ple", "bins": 32, "dropout": 0.2}, [4, 5]],
    ["ple64", {"hidden": [256, 256], "lr": 1e-3, "epochs": 60, "emb": "ple", "bins": 64, "dropout": 0.2}, [1]],
    ["periodic", {"hidden": [256, 256], "lr": 1e-3, "epochs": 60, "emb": "periodic", "sigma": 0.1}, [1, 2, 3, 4, 5]],
    ["periodic_s1", {"hidden": [256, 256], "lr": 1e-3, "epochs": 60, "emb": "periodic", "sigma": 1.0}, [1]],
]

if __name__ == "__main__":
    configs = json.loads(Path(sys.argv[1]).read_text()) if len(sys.argv) > 1 else CONFIGS
    OUT.mkdir(parents=True, exist_ok=True)
    probs = {}
    for name, cfg, seeds in configs:
        for seed in seeds:
            t = time.time()
            val_loss, p_best, epoch, p_last = run(cfg, seed)
            for tag, p in (("best", p_best), ("last", p_last)):
                probs[f"{name}_s{seed}_{tag}"] = p.astype(np.float32)
            acc, f1 = float((p_best.argmax(1) == yva).mean()), macro_f1(yva, p_best.argmax(1))
            took = time.time() - t
            print(f"{name}_s{seed}: acc {acc:.4f} macro-F1 {f1:.4f} epoch {epoch} ({took:.0f} s)", flush=True)
            np.savez_compressed(OUT / f"mlp_probs{os.environ.get('TAG', '')}.npz", **probs)
