"""DiLoCo, Streaming DiLoCo and delayed DiLoCo over pyccl (docs/diloco.md).

::

    from pyccl.diloco import DiLoCo
    comm = pyccl.Communicator("master:29400", world_size=4)
    inner = torch.optim.AdamW(model.parameters(), lr=4e-4)
    dl = DiLoCo(model, inner, comm, sync_every=100, fragments=4, overlap=2,
                quant="e3m0")
    for batch in data:
        loss = model(batch); loss.backward()
        dl.step()               # inner step + the outer schedule
        inner.zero_grad()
    dl.finish()
"""
from pyccl.diloco.diloco import RETRYABLE, DiLoCo
from pyccl.diloco.exchange import ExchangeStats
from pyccl.diloco.fragments import Fragment, make_fragments, split_layers
from pyccl.diloco.outer import default_outer_optimizer
from pyccl.diloco.schedule import Schedule

__all__ = ["DiLoCo", "Schedule", "Fragment", "make_fragments", "split_layers",
           "default_outer_optimizer", "ExchangeStats", "RETRYABLE"]
