"""`hpt image build --spec SPEC`: the image a spec's own trainer runs in on the docker and k8s backends.

The trainer image (hpt-trainer:latest, `hpt image build [--offline]`) plus the user's source folder at
/opt/hpt/source ($HPT_TRAINER_SOURCE) and its requirements.txt, tagged as the spec says (default
hpt-user-NAME:<digest>). Offline like images/build-offline.sh: pip inside the build never reaches an
index; requirements the base does not already satisfy are downloaded as wheels on this host first.
Skipped when the image already carries the source digest and the base image id it would be built from.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from hpt.commands.common import note
from hpt.schemas.errors import UserError
from hpt.schemas.trainer import IGNORED_DIRS, IGNORED_SUFFIXES, source_digest

LABEL_DIGEST = "hpt.trainer-digest"
LABEL_BASE = "hpt.base-id"


def _docker() -> str:
    return "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else "docker"


def _inspect(reference: str, template: str) -> str | None:
    proc = subprocess.run([_docker(), "image", "inspect", "-f", template, reference], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def _ignore(folder: str, names: list[str]) -> set[str]:
    """What source_digest leaves out is left out of the image too, so the copy hashes the same."""
    def special(name: str) -> bool:   # a FIFO or device: not source (source_digest skips it), and copying it never ends
        path = os.path.join(folder, name)
        return not os.path.isdir(path) and not os.path.isfile(path)

    return {n for n in names if n in IGNORED_DIRS or n.endswith(IGNORED_SUFFIXES) or n.endswith(".egg-info") or special(n)}


def build_user_image(spec: Path, base: str, force: bool = False) -> str:
    """Build (or find up to date) the spec's trainer image; returns its tag. UserError for bad input."""
    from hpt.compiler.loading import load_spec
    from hpt.compiler.validation import validate_and_load
    import hpt.images

    loaded = load_spec(str(spec))
    _doc, user = validate_and_load(loaded.doc, loaded.directory, [], loaded.errors)
    if user is None:
        raise UserError("the spec names a built-in architecture, not a trainer of its own", where=str(spec),
                        hint="`hpt image build` without --spec builds the built-in trainer image")
    if subprocess.run([_docker(), "info"], capture_output=True).returncode != 0:
        raise UserError("no Docker daemon answers", where="hpt image build", hint="start one (scripts/start-dockerd.sh)")
    base_id = _inspect(base, "{{.Id}}")
    if base_id is None:
        raise UserError(f"the base image {base!r} is not on this Docker host", where="--base",
                        hint="build it first: `hpt image build --offline` (or `hpt image build`)")
    tag, digest = user.image, user.trainer.digest
    labels = _inspect(tag, f'{{{{index .Config.Labels "{LABEL_DIGEST}"}}}} {{{{index .Config.Labels "{LABEL_BASE}"}}}}')
    if not force and labels == f"{digest} {base_id}":
        note(f"{tag} is up to date (source {digest[:19]}…, base {base})")
        return tag
    with tempfile.TemporaryDirectory(prefix="hpt-user-image-") as scratch:
        context = Path(scratch)
        shutil.copytree(user.trainer.source, context / "source", ignore=_ignore, symlinks=False)
        if source_digest(context / "source") != digest:
            raise UserError("the source folder changed while it was copied; build again", where=user.trainer.source)
        (context / "deps").mkdir()
        shutil.copy(Path(hpt.images.__file__).parent / "trainer" / "Dockerfile.user", context / "Dockerfile")
        requirements = context / "source" / "requirements.txt"
        if requirements.is_file() and not _satisfied_by(base, requirements):
            note(f"downloading wheels for {requirements.name} on this host")
            proc = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
                                   "-d", str(context / "deps"), "-r", str(requirements)], capture_output=True, text=True)
            if proc.returncode != 0:
                raise UserError(f"cannot download its requirements: {_last_line(proc.stderr)}",
                                where=str(Path(user.trainer.source) / "requirements.txt"))
        note(f"building {tag} (base {base}, source {user.trainer.source})")
        proc = subprocess.run([_docker(), "build", "--quiet", "--build-arg", f"BASE={base}",
                               "--label", f"{LABEL_DIGEST}={digest}", "--label", f"{LABEL_BASE}={base_id}",
                               "-t", tag, str(context)], capture_output=True, text=True,
                              env=dict(os.environ, DOCKER_BUILDKIT="1"))
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-4000:])
            raise UserError(f"docker build failed: {_last_line(proc.stderr)}", where=tag)
    note(f"built {tag}")
    return tag


def _satisfied_by(base: str, requirements: Path) -> bool:
    """Does the base image already have every requirement? (pip's dry run inside it, no index)"""
    proc = subprocess.run([_docker(), "run", "--rm", "--network", "none", "-v", f"{requirements}:/tmp/requirements.txt:ro",
                           "--entrypoint", "python3", base, "-m", "pip", "install", "--dry-run", "--no-index",
                           "--quiet", "-r", "/tmp/requirements.txt"], capture_output=True, text=True)
    return proc.returncode == 0


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
