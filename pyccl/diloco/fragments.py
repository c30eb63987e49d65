"""Fragments: the parameters of a model split into P parts synced apart.

Streaming DiLoCo syncs one fragment at a time.  A fragment is a set of
whole layers (a layer: the parameters of one module, e.g. ``blocks.0.attn``
or ``blocks.0.mlp.0``); the layers are dealt to fragments largest first,
each to the fragment that is lightest so far (ties: the lower index), so
the fragments come out balanced by size.  Inside a fragment the
parameters keep the model's order.

Each fragment owns its flat float32 buffers: ``global_`` (the global copy
of its parameters, identical on every peer) and ``send`` (the pseudo-
gradient, all-reduced in place).  Copying between the model's parameters
and a flat buffer is :meth:`Fragment.gather` / :meth:`Fragment.scatter`.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple


def layer_of(name: str) -> str:
    """The layer a parameter belongs to: its module path
    (``"blocks.0.attn.in_proj_weight"`` -> ``"blocks.0.attn"``)."""
    return name.rsplit(".", 1)[0] if "." in name else name


def split_layers(named_sizes: Sequence[Tuple[str, int]],
                 parts: int) -> List[List[int]]:
    """Deals the layers of ``named_sizes`` (parameter name, element count,
    in model order) into ``parts`` groups balanced by size; returns, per
    group, the indices of its parameters in model order.

    Raises ValueError when there are fewer layers than parts."""
    layers: Dict[str, List[int]] = {}
    for i, (name, _) in enumerate(named_sizes):
        layers.setdefault(layer_of(name), []).append(i)
    if parts < 1 or parts > len(layers):
        raise ValueError("cannot split %d layer(s) into %d fragment(s)"
                         % (len(layers), parts))
    sizes = {k: sum(named_sizes[i][1] for i in idx)
             for k, idx in layers.items()}
    order = sorted(layers, key=lambda k: -sizes[k])  # stable: model order
    load = [0] * parts
    groups: List[List[int]] = [[] for _ in range(parts)]
    for k in order:
        g = min(range(parts), key=lambda j: (load[j], j))
        load[g] += sizes[k]
        groups[g].extend(layers[k])
    return [sorted(g) for g in groups]


class Fragment:
    """Parameters synced together, with their flat buffers.

    Args:
        index: the fragment's number p (0..P-1).
        names: the parameters' names (for messages and docs).
        params: the model's parameters (float32 torch tensors).
    """

    def __init__(self, index: int, names: List[str], params: List[Any]) -> None:
        import torch
        self.index = index
        self.names = names
        self.params = params
        self.numel = sum(p.numel() for p in params)
        self.global_ = torch.zeros(self.numel, dtype=torch.float32)
        self.send = torch.zeros(self.numel, dtype=torch.float32)
        # The local parameters when the fragment was sent (delayed mode).
        self.snap: Any = None
        self._views: List[Tuple[Any, int, int]] = []
        at = 0
        for p in params:
            self._views.append((p, at, at + p.numel()))
            at += p.numel()

    def gather(self, out: Any) -> Any:
        """Copies the model's parameters into the flat buffer ``out``."""
        for p, lo, hi in self._views:
            out[lo:hi].copy_(p.detach().reshape(-1))
        return out

    def scatter(self, flat: Any) -> None:
        """Copies the flat buffer ``flat`` into the model's parameters."""
        for p, lo, hi in self._views:
            p.data.copy_(flat[lo:hi].view_as(p))

    def nbytes(self) -> int:
        return 4 * self.numel

    def __repr__(self) -> str:
        return "Fragment(%d, %d params, %d elements)" % (
            self.index, len(self.params), self.numel)


def make_fragments(named_params: Sequence[Tuple[str, Any]],
                   parts: int) -> List[Fragment]:
    """Splits a model's ``named_parameters()`` into ``parts`` fragments."""
    named = [(n, p) for n, p in named_params if p.requires_grad]
    groups = split_layers([(n, p.numel()) for n, p in named], parts)
    return [Fragment(j, [named[i][0] for i in g], [named[i][1] for i in g])
            for j, g in enumerate(groups)]
