"""Ray as a backend: the evaluation's work items run as Ray tasks, on a cluster or a local Ray.

The only module that imports ray, and only when a command asks for `--backend ray` (or a
sweep): one machine needs nothing of Ray. The tasks run deploy/evaluate.py's own `_chunk`
on the same items, so the seeds, and therefore the episodes, are those of the local pool.
Latency is still timed by the caller after the last rollout, on the caller's machine.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, Sequence

from safecritic.configs.errors import RunError, SafecriticError

INSTALL_HINT = 'pip install "safecritic[ray]"'
CONNECT_TIMEOUT_S = 5.0  # a TCP check first: ray.init retries an unreachable address for minutes


def import_ray() -> ModuleType:
    """ray, or a clear error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RunError(f"Ray is not installed (--backend ray and `safecritic sweep` need it): {INSTALL_HINT}") from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of `host:port` or `ray://host:port`; None for Ray's own words (auto, local)."""
    rest = address.split("://", 1)[-1]
    host, sep, port = rest.rpartition(":")
    if not sep:
        return None
    if not port.isdigit():
        raise RunError(f"--ray-address {address!r}: expected HOST:PORT (e.g. 127.0.0.1:6379), 'auto' or ray://HOST:PORT")
    return host.strip("[]"), int(port)


def check_reachable(address: str) -> None:
    """Refuse an address nothing listens on, naming it (before ray.init would wait on it)."""
    target = _host_port(address)
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise RunError(f"--ray-address {address}: no Ray cluster reachable there ({exc.strerror or exc}); start one "
                       "(`ray start --head`) and pass its address, or leave --ray-address out to start Ray on this "
                       "machine") from None


def shipped_modules(imports: Sequence[str]) -> list[ModuleType]:
    """The user's modules of env.imports that are not installed packages (found through
    PYTHONPATH or the working directory): a cluster's workers get them through Ray's
    runtime_env, so `_chunk` can import them there as it does in a local worker."""
    out: dict[str, ModuleType] = {}
    for name in imports:
        top = name.split(".")[0]
        spec = importlib.util.find_spec(top)
        origin = spec.origin if spec else None
        if origin is None or top == "safecritic" or any(p in Path(origin).parts for p in ("site-packages", "dist-packages")):
            continue
        out[top] = importlib.import_module(top)
    return list(out.values())


class RayRunner:
    """deploy/evaluate.py's Runner on Ray: each work item one Ray task of one CPU.

    Connects on first use: to `address` (HOST:PORT, ray://HOST:PORT, or auto), or, without
    one, starts Ray on this machine with `num_cpus` CPUs. Ray's presence and the address are
    checked at once, so `safecritic run` refuses them before training, not after. Use it as a
    context manager; the connection it made closes on exit.
    """

    def __init__(self, address: str | None = None, num_cpus: int | None = None, imports: Sequence[str] = (),
                 env_vars: dict[str, str] | None = None) -> None:
        import_ray()
        if address:
            check_reachable(address)
        self.address = address
        self.num_cpus = num_cpus
        self.imports = list(imports)
        self.env_vars = dict(env_vars or {})
        self.ray: ModuleType | None = None
        self._owns = False

    def connect(self) -> ModuleType:
        if self.ray is not None:
            return self.ray
        ray = import_ray()
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if ray.is_initialized():  # the caller connected already (a notebook, a test)
            self.ray = ray
            return ray
        runtime_env: dict[str, Any] = {}
        modules = shipped_modules(self.imports)
        if modules:
            runtime_env["py_modules"] = modules
        if self.env_vars:
            runtime_env["env_vars"] = self.env_vars
        quiet = {"logging_level": "ERROR", "log_to_driver": False, "runtime_env": runtime_env or None}
        if self.address:
            try:
                ray.init(address=self.address, **quiet)
            except (ConnectionError, RuntimeError) as exc:
                raise RunError(f"--ray-address {self.address}: cannot join the Ray cluster there ({exc}); a cluster "
                               "with token authentication needs RAY_AUTH_MODE=token (and its token) set here") from None
        else:
            ray.init(address="local", num_cpus=self.num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                     **quiet)
        self.ray, self._owns = ray, True
        return ray

    def __call__(self, fn: Callable[[tuple], Any], items: list[tuple]) -> Iterator[Any]:
        ray = self.connect()
        remote = ray.remote(num_cpus=1, max_retries=0)(fn)
        pending = [remote.remote(item) for item in items]
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                yield _get(ray, done[0])
        finally:
            for ref in pending:  # an error or an interrupt: nothing of ours keeps running
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self.ray is not None and self._owns:
            self.ray.shutdown()
        self.ray, self._owns = None, False

    def __enter__(self) -> "RayRunner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _get(ray: ModuleType, ref: Any) -> Any:
    """ray.get, with our own errors raised as themselves (not inside Ray's remote traceback)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, SafecriticError):
            raise exc.cause from None
        raise

