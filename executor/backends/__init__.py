"""The backends: where trials run. Each lives in its own module, implements hpt.executor.backend.Backend and
declares its options as a dataclass (an unknown option is refused)."""
from __future__ import annotations

from importlib import import_module
from typing import Any

from hpt.executor.backend import Backend
from hpt.schemas.errors import UserError

# name → "module:class"; imported lazily so `--backend local` needs neither docker nor kubernetes.
BACKENDS = {
    "local": "hpt.executor.backends.local:LocalBackend",
    "docker": "hpt.executor.backends.docker:DockerBackend",
    "k8s": "hpt.executor.backends.kubernetes:KubernetesBackend",
}


def get_backend(name: str, **options: Any) -> Backend:
    try:
        module_name, _, cls_name = BACKENDS[name].partition(":")
    except KeyError:
        raise UserError(f"unknown backend {name!r}", where="--backend", hint=f"choose one of {', '.join(BACKENDS)}") from None
    backend: type[Backend] = getattr(import_module(module_name), cls_name)
    return backend.with_options(**options)
