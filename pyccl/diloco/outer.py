"""The outer optimizer and its state as named tensors.

The outer optimizer steps the global copy of each fragment (one flat
float32 parameter per fragment) with the averaged pseudo-gradient as its
gradient.  It must be elementwise (SGD, Adam, AdamW, ...): then stepping a
flat buffer gives the same bits as stepping the parameters one by one.

Its state must exist before the first outer step, so that a joiner can
receive it through :class:`pyccl.SharedState` under the same names on
every peer.  :func:`prime` makes it exist: one step with zero gradients,
after which the parameters are put back and every state tensor is set to
zero.  For SGD and Adam(W) zeroed state behaves as fresh state (SGD's
first momentum step computes 0 * m + g = g; Adam's counters start at 0).
An optimizer whose fresh state is not all zeros (Adagrad with an initial
accumulator, say) must not be primed this way; :func:`prime` refuses the
ones it does not know.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List

from pyccl.errors import InvalidArgument

#: Outer optimizers whose zeroed state equals their fresh state.
PRIMABLE = ("SGD", "Adam", "AdamW", "NAdam", "RAdam")


def default_outer_optimizer(params: List[Any]) -> Any:
    """SGD with Nesterov momentum 0.9 and lr 0.7 (DiLoCo's recipe)."""
    import torch
    return torch.optim.SGD(params, lr=0.7, momentum=0.9, nesterov=True)


def make_outer(factory: Callable[[List[Any]], Any], params: List[Any]) -> Any:
    """The outer optimizer over ``params``, with its state primed."""
    opt = factory(params)
    prime(opt, params)
    return opt


def prime(opt: Any, params: List[Any]) -> None:
    """Creates the state of ``opt`` for every parameter, all zeros,
    without changing the parameters."""
    name = type(opt).__name__
    if name not in PRIMABLE:
        raise ValueError("outer optimizer %s: only %s are supported (their "
                         "state can be made to exist before the first step)"
                         % (name, ", ".join(PRIMABLE)))
    import torch
    saved = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.zeros_like(p)
    opt.step()
    with torch.no_grad():
        for p, s in zip(params, saved):
            p.copy_(s)
            p.grad = None
    for st in opt.state.values():
        for v in st.values():
            if torch.is_tensor(v):
                v.zero_()


def momentum_targets(opt: Any, warmup: int) -> List[float]:
    """Each parameter group's momentum, which an outer warmup of
    ``warmup`` rounds rises to (an empty list when ``warmup`` is 0)."""
    if warmup < 0:
        raise InvalidArgument("outer_warmup must be >= 0, not %r" % warmup)
    if warmup == 0:
        return []
    if any("momentum" not in g for g in opt.param_groups):
        raise InvalidArgument("outer_warmup ramps the outer momentum: %s has "
                              "no momentum setting (use SGD)"
                              % type(opt).__name__)
    return [float(g["momentum"]) for g in opt.param_groups]


def ramp_momentum(opt: Any, targets: List[float], fraction: float) -> None:
    """Sets each group's momentum to ``min(1, fraction)`` of its target.
    Momentum 0 leaves SGD's (zeroed) buffer alone, so the first step with
    momentum starts it from the gradient, as a fresh optimizer would."""
    f = min(1.0, fraction)
    for g, m in zip(opt.param_groups, targets):
        g["momentum"] = m * f


def state_tensors(opt: Any, params: List[Any]) -> Dict[str, Any]:
    """The optimizer's state tensors by stable name ``"opt.<i>.<key>"``
    (i: the parameter's index), for :class:`pyccl.SharedState`."""
    import torch
    out = {}
    for i, p in enumerate(params):
        for key, v in sorted(opt.state.get(p, {}).items()):
            if torch.is_tensor(v):
                if v.dim() == 0:
                    # SharedState needs a buffer with at least one element
                    # it can view as bytes: a 1-element view of the same
                    # storage.
                    v = v.view(1)
                out["opt.%d.%s" % (i, key)] = v
    return out
