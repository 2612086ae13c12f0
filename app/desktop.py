"""The window on a Linux desktop: the X11 libraries Qt's xcb plugin needs, and the applications-menu entry."""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import sys
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

# What PySide6's xcb platform plugin (libqxcb.so and libQt6XcbQpa.so.6) loads from the system beyond the
# libraries the offscreen platform needs too, with the Debian/Ubuntu package of each (found with ldd on the
# plugin, and QT_DEBUG_PLUGINS=1 under Xvfb). A stock Debian 12 desktop lacks the icccm, keysyms and cursor ones.
XCB_LIBRARIES: dict[str, str] = {
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
}
# What PySide6's QtCore, QtGui and QtWidgets themselves load from the system, whichever platform plugin draws
# (found with readelf on the wheel's libraries). A Debian server lacks all of them: without this check the
# manager would die in an ImportError traceback ("libglib-2.0.so.0: cannot open shared object file").
QT_LIBRARIES: dict[str, str] = {
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libX11.so.6": "libx11-6",
    "libxkbcommon.so.0": "libxkbcommon0",
}
DESKTOP_FILE = "smtpsvc.desktop"
ICON_NAME = "smtpsvc"


def missing_libraries(table: Mapping[str, str] = XCB_LIBRARIES) -> dict[str, str]:
    """The libraries of ``table`` the dynamic loader cannot open, with their packages."""
    missing = {}
    for soname, package in table.items():
        try:
            ctypes.CDLL(soname)
        except OSError:
            missing[soname] = package
    return missing


def apt_line(packages: list[str]) -> str:
    return "sudo apt-get install " + " ".join(dict.fromkeys(packages))


def display_problem(environ: Mapping[str, str] = os.environ, platform: str = sys.platform,
                    qt_libraries: Mapping[str, str] = QT_LIBRARIES) -> str | None:
    """Why the window cannot open here (said before Qt aborts with its own terse message), or None."""
    if not platform.startswith("linux"):
        return None
    wanted = environ.get("QT_QPA_PLATFORM", "")
    xcb = wanted.startswith("xcb") or not (wanted or environ.get("WAYLAND_DISPLAY"))
    if xcb and not environ.get("DISPLAY"):
        return ("smtpsvc: no display to open the manager window on (DISPLAY is not set).\n"
                "Run it from a desktop session, or run the server without a window: smtpsvc serve")
    # Offscreen, Wayland, VNC …: the platform is Qt's business, but Qt itself still needs its libraries.
    missing = missing_libraries(qt_libraries) | (missing_libraries() if xcb else {})
    if not missing:
        return None
    needs = "Qt's X11 (xcb) platform needs" if xcb else "Qt needs"
    return (f"smtpsvc: the manager window cannot open: {needs} "
            f"{', '.join(missing)}, which this system lacks.\n"
            f"Install them with:\n\n    {apt_line(list(missing.values()))}\n\n"
            "(The server itself runs without them: smtpsvc serve)")


# --- The applications-menu entry (freedesktop.org Desktop Entry and Icon Theme specifications) --------------

def data_home(environ: Mapping[str, str] = os.environ) -> Path:
    configured = environ.get("XDG_DATA_HOME", "")
    return Path(configured) if Path(configured).is_absolute() else Path.home() / ".local" / "share"


def command_line() -> str:
    """How the menu starts this smtpsvc: its installed script, else this interpreter with the module."""
    script = shutil.which("smtpsvc")
    if script:
        return _quoted(str(Path(script).resolve()))
    return f"{_quoted(sys.executable)} -m app.cli"


def _quoted(arg: str) -> str:
    """An Exec argument (Desktop Entry spec: double quotes; \\, ", `, $ escaped inside them)."""
    if not any(c in arg for c in ' \t\n"\'\\><~|&;$*?#()`'):
        return arg
    return '"' + "".join("\\" + c if c in '"`$\\' else c for c in arg) + '"'


def desktop_entry(exec_line: str) -> str:
    return "\n".join((
        "[Desktop Entry]",
        "Type=Application",
        "Name=SMTP Service Manager",
        "GenericName=SMTP server manager",
        "Comment=Manage the smtpsvc SMTP virtual server, its domains, queue and Mailroot",
        f"Exec={exec_line}",
        f"Icon={ICON_NAME}",
        "Terminal=false",
        "Categories=Network;Email;System;",
        "Keywords=SMTP;mail;IIS;queue;relay;",
        "StartupWMClass=smtpsvc",
        "",
    ))


def install_entry(home: Path) -> tuple[Path, Path]:
    """Write the menu entry and its icon under ``home`` (XDG_DATA_HOME); returns both paths."""
    entry = home / "applications" / DESKTOP_FILE
    icon = home / "icons" / "hicolor" / "scalable" / "apps" / f"{ICON_NAME}.svg"
    entry.parent.mkdir(parents=True, exist_ok=True)
    icon.parent.mkdir(parents=True, exist_ok=True)
    icon.write_bytes(resources.files("resources").joinpath("icons", "server.svg").read_bytes())
    temp = entry.with_suffix(".tmp")
    temp.write_text(desktop_entry(command_line()), encoding="utf-8")
    os.replace(temp, entry)
    return entry, icon


def remove_entry(home: Path) -> list[Path]:
    removed = []
    for path in (home / "applications" / DESKTOP_FILE,
                 home / "icons" / "hicolor" / "scalable" / "apps" / f"{ICON_NAME}.svg"):
        if path.exists():
            path.unlink()
            removed.append(path)
    return removed


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "desktop-entry", help="put the manager into the desktop's applications menu (Linux)",
        description="Install (or with --remove, remove) a freedesktop.org menu entry and icon for this user, "
                    "under $XDG_DATA_HOME (~/.local/share).")
    parser.add_argument("--remove", action="store_true", help="remove the entry and its icon")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    home = data_home()
    if args.remove:
        removed = remove_entry(home)
        print("\n".join(f"removed {path}" for path in removed) or "no menu entry was installed")
        return 0
    try:
        entry, icon = install_entry(home)
    except OSError as error:
        print(f"smtpsvc desktop-entry: {error}", file=sys.stderr)
        return 1
    print(f"installed {entry}\ninstalled {icon}")
    return 0
