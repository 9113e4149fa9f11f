"""Which Flower releases this integration supports, and the check made when it is imported.

The integration is built on Flower's Message API (``flwr.app``, ``flwr.clientapp``,
``flwr.serverapp``, the ``Grid``), on the ``flower-superlink`` / ``flower-supernode`` /
``flwr run`` command lines of the single-port Runtime HTTP API, and on the simulation
runtime behind ``flower-superlink --simulation``. Each of these has changed between
minor releases, so the supported range names only the minor releases the test suite has
been run against; a release outside it still imports, with a
:class:`UnsupportedFlowerVersionWarning`.
"""

from __future__ import annotations

import re
import warnings

from secagg.errors import require_extra

__all__ = [
    "FLWR_SUPPORTED",
    "FLWR_MINIMUM",
    "FLWR_UPPER_BOUND",
    "FLWR_VERSION",
    "UnsupportedFlowerVersionWarning",
    "flower_version_supported",
    "check_flower_version",
]

#: The oldest supported release, as ``(major, minor)``.
FLWR_MINIMUM: tuple[int, int] = (1, 41)
#: The first release not vouched for (exclusive upper bound), as ``(major, minor)``.
FLWR_UPPER_BOUND: tuple[int, int] = (1, 43)
#: The supported range as a requirement specifier (the ``flower`` extra pins the same).
FLWR_SUPPORTED = (
    f">={FLWR_MINIMUM[0]}.{FLWR_MINIMUM[1]},<{FLWR_UPPER_BOUND[0]}.{FLWR_UPPER_BOUND[1]}"
)

_RELEASE = re.compile(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?(.*)$")


class UnsupportedFlowerVersionWarning(UserWarning):
    """The installed Flower is outside :data:`FLWR_SUPPORTED`; things may break."""


def flower_version_supported(version: str) -> bool:
    """Whether a Flower version string lies in :data:`FLWR_SUPPORTED`.

    Only the release's major and minor numbers count (every patch release of a supported
    minor is supported). A pre-release of the upper bound (``1.43.0rc1``) is outside, as
    it is for a requirement ``<1.43``; a string that is not a version is unsupported.
    """
    match = _RELEASE.match(version)
    if match is None:
        return False
    release = (int(match.group(1)), int(match.group(2)))
    return FLWR_MINIMUM <= release < FLWR_UPPER_BOUND


def check_flower_version(version: str) -> bool:
    """Warn with :class:`UnsupportedFlowerVersionWarning` if ``version`` is unsupported.

    Returns:
        Whether ``version`` is supported.
    """
    if flower_version_supported(version):
        return True
    warnings.warn(
        f"flwr {version} is installed, but protocols.flower supports flwr{FLWR_SUPPORTED}; "
        f"install a supported release: pip install 'flwr[simulation]{FLWR_SUPPORTED}'",
        UnsupportedFlowerVersionWarning,
        stacklevel=2,  # the import of protocols.flower
    )
    return False


#: The installed Flower release (checked against :data:`FLWR_SUPPORTED` on import).
FLWR_VERSION: str = str(
    getattr(require_extra("flwr", "flower", "protocols.flower"), "__version__", "unknown")
)
check_flower_version(FLWR_VERSION)
