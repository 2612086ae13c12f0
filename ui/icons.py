"""Our SVG icon set (resources/icons) as QIcons, with the server state drawn as a badge over the server."""

from __future__ import annotations

from functools import cache
from importlib import resources

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QIcon, QPainter, QPixmap
from PySide6.QtSvg import QSvgRenderer

SIZES = (16, 20, 24, 32, 48, 64)
STATE_BADGES: dict[str, str] = {
    "started": "badge-running",
    "stopped": "badge-stopped",
    "paused": "badge-paused",
    "starting": "badge-pending",
    "stopping": "badge-pending",
    "pausing": "badge-pending",
    "continuing": "badge-pending",
}
DOMAIN_ICONS: dict[str, str] = {"default": "domain-local", "alias": "domain-alias", "remote": "domain-remote"}
MESSAGE_BADGES: dict[str, str] = {"deferred": "badge-deferred", "frozen": "badge-frozen", "active": "badge-active",
                                  "etrn": "badge-paused"}


def icon_path(name: str) -> str:
    return str(resources.files("resources").joinpath("icons", f"{name}.svg"))


@cache
def _renderer(name: str) -> QSvgRenderer:
    renderer = QSvgRenderer(icon_path(name))
    if not renderer.isValid():
        raise FileNotFoundError(f"icon {name!r} is missing or not valid SVG: {icon_path(name)}")
    return renderer


def _pixmap(layers: tuple[tuple[str, float, float, float], ...], size: int) -> QPixmap:
    """Layers of (icon, x, y, scale) in fractions of ``size``, painted in order."""
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    for name, x, y, scale in layers:
        _renderer(name).render(painter, QRectF(x * size, y * size, scale * size, scale * size))
    painter.end()
    return pixmap


@cache
def icon(name: str) -> QIcon:
    """One icon of the set, crisp at every size."""
    result = QIcon()
    for size in SIZES:
        result.addPixmap(_pixmap(((name, 0, 0, 1),), size))
    return result


@cache
def state_icon(base: str, state: str) -> QIcon:
    """``base`` (computer or server) with the IIS server-state badge in its lower left corner."""
    badge = STATE_BADGES.get(state, "badge-stopped")
    result = QIcon()
    for size in SIZES:
        result.addPixmap(_pixmap(((base, 0, 0, 1), (badge, 0, 0.48, 0.52)), size))
    return result


def domain_icon(domain_type: str) -> QIcon:
    return icon(DOMAIN_ICONS.get(domain_type, "domain"))


@cache
def badged_icon(base: str, badge: str) -> QIcon:
    """``base`` with ``badge`` in its lower right corner."""
    result = QIcon()
    for size in SIZES:
        result.addPixmap(_pixmap(((base, 0, 0, 1), (badge, 0.48, 0.48, 0.52)), size))
    return result


def message_icon(state: str) -> QIcon:
    """A queued message: plain when waiting for its first attempt, badged when deferred, frozen or active."""
    badge = MESSAGE_BADGES.get(state)
    return badged_icon("message", badge) if badge else icon("message")
