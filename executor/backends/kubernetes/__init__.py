"""The Kubernetes backend, split by concept: the backend (backend.py), the watch on a plan's Jobs (watch.py),
why a pod is stuck or failed (pods.py), and rendering a trial into a Job (render.py, with the *.yaml.j2 templates).
The spec's `kubernetes` section is validated at compile time by hpt.schemas.kubernetes."""
from __future__ import annotations

from hpt.executor.backends.kubernetes.backend import KubernetesBackend

__all__ = ["KubernetesBackend"]
