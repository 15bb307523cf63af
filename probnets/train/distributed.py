"""Data-parallel training with ``torch.distributed`` (launched by ``torchrun``).

Every rank holds a full copy of the model, draws its own share of each global mini-batch and
computes the gradient of its share of the loss. Pyro losses sum over the examples of a batch, so
the gradient of the global batch is the *sum* of the ranks' gradients; :class:`GradientSync`
all-reduces it after every ``loss_and_grads`` call, in one flat buffer per dtype and in
parameter-name order (identical on every rank). That is the computation
:class:`torch.nn.parallel.DistributedDataParallel` performs, done on the parameters found in
the trace rather than through a wrapped ``forward``: Pyro models call their networks from
``model``/``guide`` methods and keep parameters in the param store, where DDP's reducer does
not look. It covers model, guide and estimator-owned (``cv.*``) parameters alike, so learned
baselines and control variates stay synchronised.

The loss and everything the NaN guard looks at are reduced too, so every rank takes the same
decision at every step. Rank 0 alone writes checkpoints, metrics and figures; a checkpoint holds
every rank's random state, so a resumed run continues each rank's stream.

Models whose loss is *scaled* by the batch size (``pyro.plate(..., subsample_size=b)`` with the
scale ``N / b``) should be given the global batch size, ``world_size * b``, as the scale; see
``guides/scaling.md``.
"""

import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.distributed as dist


def launched_distributed() -> bool:
    """True when started by ``torchrun`` (or any launcher setting ``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank() -> int:
    """This process's rank in the default process group (0 without one)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """The number of ranks of the default process group (1 without one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """Whether this is rank 0 (the one that logs and writes checkpoints)."""
    return rank() == 0


def init_distributed(device_spec: str = "auto") -> torch.device:
    """Join the process group ``torchrun`` set up; return the device this rank uses.

    NCCL with one GPU per process (``cuda:LOCAL_RANK``) when CUDA is available and asked for,
    gloo on the CPU otherwise.
    """
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_spec in ("auto", "cuda")
    if device_spec.startswith("cuda:"):
        raise ValueError(
            f"under torchrun the device must be 'auto' or 'cuda' (each rank "
            f"takes cuda:LOCAL_RANK itself), got {device_spec!r}"
        )
    backend = "nccl" if use_cuda else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    if use_cuda:
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


class GradientSync:
    """Sum gradients (and scalars) over the ranks of the default process group."""

    def __init__(self) -> None:
        if not dist.is_initialized():
            raise RuntimeError("GradientSync needs an initialized torch.distributed process group")
        self.world_size = dist.get_world_size()

    def gradients(self, named_params: Mapping[str, torch.Tensor]) -> None:
        """All-reduce (sum) the ``.grad`` of ``named_params`` in place.

        A parameter that one rank did not touch gets a zero gradient, so the flat buffers have
        the same layout on every rank.
        """
        params = [named_params[name] for name in sorted(named_params)]
        by_kind: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
        for param in params:
            grad = param.grad
            if grad is None:
                grad = param.grad = torch.zeros_like(param)
            by_kind.setdefault((grad.dtype, grad.device), []).append(grad)
        for grads in by_kind.values():
            # One all-reduce per dtype and device over a flat buffer, as DDP's buckets do.
            flat = torch.cat([grad.reshape(-1) for grad in grads])
            dist.all_reduce(flat)
            for grad, reduced in zip(grads, flat.split([grad.numel() for grad in grads])):
                grad.copy_(reduced.view_as(grad))

    def scalar(self, value: float, device: torch.device | str) -> float:
        """The sum over ranks of a Python float (NaN and inf propagate)."""
        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return float(tensor)

    def broadcast_parameters(self, named_params: Mapping[str, torch.Tensor]) -> None:
        """Make every rank start from rank 0's values."""
        with torch.no_grad():
            for name in sorted(named_params):
                dist.broadcast(named_params[name].data, src=0)

    def barrier(self) -> None:
        """Wait until every rank reaches this call."""
        dist.barrier()

    def gather_objects(self, obj: Any) -> list[Any]:
        """A list with every rank's ``obj`` (on every rank)."""
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _local_entry(
    local_rank: int, fn: Callable[..., Any], world_size: int, port: int, args: tuple[Any, ...]
) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(local_rank),
        LOCAL_RANK=str(local_rank),
        WORLD_SIZE=str(world_size),
    )
    dist.init_process_group("gloo", rank=local_rank, world_size=world_size)
    try:
        fn(local_rank, *args)
    finally:
        dist.destroy_process_group()


def launch_local(fn: Callable[..., Any], world_size: int, *args: Any) -> None:
    """Run ``fn(rank, *args)`` in ``world_size`` CPU processes joined by gloo on loopback.

    For tests and benchmarks on one machine; real jobs use ``torchrun``. ``fn`` must be
    importable (defined at module level).
    """
    import torch.multiprocessing as mp

    mp.start_processes(
        _local_entry,
        args=(fn, world_size, _free_port(), args),
        nprocs=world_size,
        start_method="spawn",
        join=True,
    )
