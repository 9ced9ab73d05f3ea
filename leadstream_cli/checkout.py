"""The repository checkout the CLI runs from, if any.

From a checkout (``make``, ``pip install -e .``) the CLI can reach deploy/local and write to .run/. Installed as a
package (the container image, ``pip install .``) there is no checkout: commands that need one are not offered,
and nothing points at repository files that are not there.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_PARENT = Path(__file__).resolve().parents[1]
INFRA_SCRIPT = Path("deploy") / "local" / "infra.sh"


def checkout() -> Path | None:
    """The repository root when this package runs from a source checkout, else None."""
    return PACKAGE_PARENT if (PACKAGE_PARENT / INFRA_SCRIPT).is_file() else None
