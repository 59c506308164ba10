"""`hpt image build`: build the trainer image that `hpt apply --backend docker` runs.

Both recipes are one script, images/build-offline.sh (it needs hpt's source tree: it builds hpt's
wheel from it):
- default: FROM a CUDA PyTorch runtime (--base), pip inside the build fetches what is missing;
- --offline: FROM a Debian base made from Debian's own packages (mmdebstrap), every wheel
  downloaded on the host first and installed with --no-index (no registry, no PyPI in the build).
Both are skipped when the image already carries the hash of the sources it would be built from.
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Optional

import typer

from hpt.commands.common import EXIT_USER_ERROR, err_console, note, styled, user_errors
from hpt.schemas.errors import UserError
from hpt.schemas.manifest import DEFAULT_IMAGE

DEFAULT_TAG = DEFAULT_IMAGE
GPU_BASE = "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"
OFFLINE_BASE = "hpt-base:bookworm"


def build_script() -> Path:
    """images/build-offline.sh of the source tree hpt runs from (an editable install or a checkout)."""
    import hpt.images

    script = Path(hpt.images.__file__).resolve().parent / "build-offline.sh"
    if not script.is_file() or not (script.parent.parent / "pyproject.toml").is_file():
        raise UserError("building the image needs hpt's source tree (it builds hpt's wheel from it)",
                        where=str(script.parent),
                        hint="run it from a clone: `pip install -e .` there, then `hpt image build`, or `make image`")
    return script


def build_command(tag: str = DEFAULT_TAG, base: str | None = None, offline: bool = False, force: bool = False) -> list[str]:
    argv = [str(build_script()), "--tag", tag]
    if offline:
        if base:
            argv += ["--base", base]
    else:
        argv += ["--online", "--base", base or GPU_BASE]
    if force:
        argv.append("--force")
    return argv


def register(app: typer.Typer) -> None:
    image_app = typer.Typer(help="The trainer image for `hpt apply --backend docker`.", no_args_is_help=True)
    app.add_typer(image_app, name="image")

    @image_app.command("build")
    @user_errors
    def build(
        base: Optional[str] = typer.Option(None, "--base", help=f"Base image. Default: {GPU_BASE} (GPU hosts); with --offline: {OFFLINE_BASE}, built here from Debian's packages."),
        tag: str = typer.Option(DEFAULT_TAG, "--tag", "-t", help="Name of the image to build (the spec's `image`)."),
        offline: bool = typer.Option(False, "--offline", help="No registry or PyPI in the build: Debian base via mmdebstrap, wheels downloaded on the host, pip --no-index."),
        force: bool = typer.Option(False, "--force", help="Rebuild even if the image is up to date."),
        spec: Optional[Path] = typer.Option(None, "--spec", help="Build the image of this spec's own trainer instead: the trainer image (--base, default hpt-trainer:latest) plus its source folder and requirements, tagged as the spec's trainer.image (default hpt-user-NAME:DIGEST). Offline: wheels are downloaded on this host."),
    ) -> None:
        """Build the trainer image (skipped when it is up to date with the sources)."""
        if spec is not None:
            from hpt.commands.userimage import build_user_image

            if tag != DEFAULT_TAG:
                raise UserError("--tag does not apply with --spec: the image is the spec's trainer.image", where="--tag")
            build_user_image(spec, base or DEFAULT_TAG, force)
            return
        argv = build_command(tag, base, offline, force)
        note(f"building {tag} ({'offline, ' if offline else ''}base {base or (OFFLINE_BASE if offline else GPU_BASE)})")
        code = subprocess.run(argv, check=False).returncode
        if code == EXIT_USER_ERROR:
            raise UserError("cannot build the image (see the message above)", where="hpt image build")
        if code != 0:
            err_console.print(styled(("error:", "bold red"), f" image build failed (exit code {code})"))
            raise typer.Exit(1)
        note(f"{tag} is ready")
