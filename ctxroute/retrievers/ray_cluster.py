"""Ray connection plumbing for ``--ray`` (ingestion and evaluation): import Ray lazily with a
clear error when it is missing, connect to or start a cluster for a block, size actors to it."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

from ctxroute.errors import InputError


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[Any]:
    """A Ray connection for the duration of the block: reuses one that is already up,
    otherwise ``address`` None/"local" starts a local cluster (``num_cpus``, no dashboard)
    and any other address (``auto``, ``ray://host:port``) connects to a running one. Only a
    connection made here is shut down at the end."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "configure_logging": False}
    if address in (None, "", "local"):
        kwargs.update(address="local", num_cpus=num_cpus)
    else:
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise InputError(f"could not reach a Ray cluster at {address!r}: {exc}; start one with `ray start --head` "
                         "or use --ray alone for a local cluster", address=address) from exc
    try:
        yield ray
    finally:
        ray.shutdown()


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError("Ray is not installed: pip install 'ctxroute[scale]' (or pip install ray) to use --ray") from None
    return ray


def cluster_cpus(ray: Any) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def actor_cpus(ray: Any, n_actors: int) -> float:
    """CPUs to reserve per actor: one, or a share when more actors are asked for than the
    cluster has CPUs (with one each, the extra actors would wait for a CPU forever)."""
    return min(1.0, cluster_cpus(ray) / max(1, n_actors))
