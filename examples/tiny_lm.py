"""A byte-level causal transformer and its data, for examples/diloco_lm.py.

The text is the source of Python's standard library (``*.py`` under the
directory of the ``os`` module, read in sorted order): real text that
every Python installation has, so nothing is downloaded.  The last 5% of
the bytes are the validation split.
"""
from __future__ import annotations

import math
import os
from typing import Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def load_corpus(max_bytes: int) -> Tuple[np.ndarray, np.ndarray]:
    """(train, val) byte arrays from the stdlib sources, at most
    ``max_bytes`` in all."""
    root = os.path.dirname(os.__file__)
    chunks, total = [], 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames
                             if d not in ("site-packages", "test", "tests",
                                          "idlelib", "__pycache__"))
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            with open(os.path.join(dirpath, name), "rb") as f:
                data = f.read()
            chunks.append(data)
            total += len(data)
            if total >= max_bytes:
                break
        if total >= max_bytes:
            break
    data = np.frombuffer(b"".join(chunks)[:max_bytes], dtype=np.uint8)
    cut = int(len(data) * 0.95)
    return data[:cut].copy(), data[cut:].copy()


def batches(data: np.ndarray, batch: int, ctx: int, seed: int):
    """Endless random windows of ``ctx + 1`` bytes, as (input, target)."""
    rng = np.random.default_rng(seed)
    while True:
        at = rng.integers(0, len(data) - ctx - 1, size=batch)
        x = np.stack([data[i:i + ctx + 1] for i in at]).astype(np.int64)
        t = torch.from_numpy(x)
        yield t[:, :-1], t[:, 1:]


class Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2)
                   for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class TinyLM(nn.Module):
    """Bytes in, next-byte logits out."""

    def __init__(self, d: int = 128, layers: int = 4, heads: int = 4,
                 ctx: int = 64) -> None:
        super().__init__()
        self.tok = nn.Embedding(256, d)
        self.pos = nn.Embedding(ctx, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, 256)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02 if "fc2" not in name and
                                "proj" not in name else
                                0.02 / math.sqrt(2 * layers))
            elif "bias" in name:
                nn.init.zeros_(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(x.shape[1])
        h = self.tok(x) + self.pos(pos)
        for blk in self.blocks:
            h = blk(h)
        return self.head(self.ln(h))

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self(x).reshape(-1, 256), y.reshape(-1))


@torch.no_grad()
def val_loss(model: TinyLM, val: np.ndarray, batch: int, ctx: int,
             n_batches: int) -> float:
    """Mean loss over the same ``n_batches`` windows every time."""
    model.eval()
    it = batches(val, batch, ctx, seed=12345)
    total = 0.0
    for _ in range(n_batches):
        x, y = next(it)
        total += float(model.loss(x, y))
    model.train()
    return total / n_batches
