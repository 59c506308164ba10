"""Why a Job's pod is stuck or failed, read from the pod's status: image pull errors, unschedulable,
OOM-killed, an exit code, an eviction."""
from __future__ import annotations

from typing import Any

from hpt.executor.backend import Phase, TrialStatus


def waiting_problem(pods: list[dict[str, Any]]) -> tuple[str, str] | None:
    """("image" | "unschedulable", detail) when the newest pod is stuck, else None."""
    if not pods:
        return None
    status = pods[0].get("status") or {}
    for c in status.get("containerStatuses") or []:
        waiting = (c.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                                     "CreateContainerConfigError", "CreateContainerError"):
            detail = waiting["reason"] + (f": {waiting['message']}" if waiting.get("message") else "")
            return "image", detail
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and str(cond.get("status")) == "False" and cond.get("reason") == "Unschedulable":
            return "unschedulable", cond.get("message") or "no node fits the pod"
    return None


def pod_failure(pods: list[dict[str, Any]], memory: str) -> TrialStatus | None:
    """Why the newest failed pod failed: OOM-killed, an exit code, an eviction."""
    for pod in pods:
        status = pod.get("status") or {}
        for c in status.get("containerStatuses") or []:
            term = (c.get("state") or {}).get("terminated") or (c.get("lastState") or {}).get("terminated")
            if not term:
                continue
            code = term.get("exitCode")
            if term.get("reason") == "OOMKilled":
                limit = f" (memory limit {memory})" if memory else ""
                return TrialStatus(Phase.FAILED, reason=f"OOM-killed{limit}", exit_code=code if code is not None else 137)
            if code not in (None, 0):
                extra = f" ({term['reason']})" if term.get("reason") not in (None, "", "Error") else ""
                return TrialStatus(Phase.FAILED, reason=f"exit code {code}{extra}", exit_code=int(code))
        if status.get("phase") == "Failed" and status.get("reason"):
            # Evicted, NodeLost, Shutdown...: the pod was taken away, not a trainer error.
            return TrialStatus(Phase.FAILED, reason=f"pod {status['reason']}: {status.get('message', '')}".rstrip(": "),
                               transient=True)
    return None
