"""Talking to the Docker daemon: connecting (or saying why not) and docker's errors in one line."""
from __future__ import annotations

import os
from typing import Any

from hpt.schemas.errors import UserError
from hpt.schemas.trainer import USER_IMAGE_PREFIX

BUILD_HINT = ("build it with `hpt image build --offline` (Debian base, no registry) or `hpt image build` (CUDA PyTorch base), "
              "or `make image`; a spec's own trainer: `hpt image build --spec SPEC`")
USER_BUILD_HINT = ("a spec's own trainer: build its image with `hpt image build --spec SPEC` (it builds on the trainer "
                   "image: `hpt image build --offline` first if that is missing too)")


def build_hint(image: str, user: bool | None = None) -> str:
    """How to build a missing image: a user trainer's (`user`, or by its default name) with --spec first."""
    return USER_BUILD_HINT if (user if user is not None else image.startswith(USER_IMAGE_PREFIX)) else BUILD_HINT


def connect() -> Any:
    """A docker SDK client from the environment (DOCKER_HOST), once the daemon answers."""
    try:
        import docker
    except ImportError:
        raise UserError("the docker backend needs the docker SDK", where="--backend docker",
                        hint="pip install 'hpt[docker]'") from None
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as err:
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise UserError(f"no Docker daemon answers at {where}: {short(err)}", where="--backend docker",
                        hint="start Docker (`sudo systemctl start docker`; here: scripts/start-dockerd.sh) "
                             "or set DOCKER_HOST") from None
    return client


def short(err: BaseException) -> str:
    """Docker's own words, on one line (APIError's str carries the HTTP status and URL)."""
    explanation = getattr(err, "explanation", None)
    text = explanation.decode() if isinstance(explanation, bytes) else (explanation or str(err))
    return " ".join(str(text).split())
