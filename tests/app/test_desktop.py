"""The window on a real X server (Xvfb, Qt's xcb platform), the missing-library hint, the applications-menu entry."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtGui import QImage

from app.desktop import QT_LIBRARIES, XCB_LIBRARIES, apt_line, display_problem, missing_libraries

ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("SMTPSVC_SHOTS", "/tmp"))

# Runs in a child process: the real `smtpsvc` (app.cli.main) on the X server; once the window is exposed and
# painted, the whole X screen is grabbed (through the xcb platform, from the X server) and the window closed.
DRIVER = r"""
import sys
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from app import cli, manager
from ui.window import ManagerWindow

app = manager.application()
out = sys.argv[1]

def look() -> None:
    window = next((w for w in QApplication.topLevelWidgets() if isinstance(w, ManagerWindow) and w.isVisible()),
                  None)
    if window is None or window.windowHandle() is None or not window.windowHandle().isExposed():
        QTimer.singleShot(100, look)
        return
    QTimer.singleShot(1500, lambda: shoot(window))

def shoot(window: ManagerWindow) -> None:
    screen = QApplication.primaryScreen()
    screen.grabWindow(0).save(out)
    print("platform", QApplication.platformName(), "screen", screen.size().width(), screen.size().height(),
          "window", window.width(), window.height(), flush=True)
    window.close()

QTimer.singleShot(100, look)
sys.exit(cli.main(sys.argv[2:]))
"""


@pytest.fixture
def xvfb() -> Iterator[str]:
    """A private Xvfb; its display name (":N", chosen by Xvfb itself)."""
    if shutil.which("Xvfb") is None:
        pytest.fail("Xvfb is not installed (tests/run installs it)")
    read, write = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1360x820x24", "-nolisten", "tcp"],
                              pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    try:
        with os.fdopen(read) as pipe:
            number = pipe.readline().strip()
        assert number.isdigit(), "Xvfb did not report its display"
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(10)


def child_env(**changes: str | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


@pytest.mark.slow
def test_real_window_opens_under_xvfb_with_xcb(xvfb: str, tmp_path: Path) -> None:
    shot = tmp_path / "xcb-window.png"
    args = ["--config", str(tmp_path / "smtpsvc.toml"), "--mailroot", str(tmp_path / "Mailroot"),
            "--listen", "127.0.0.1:0"]
    env = child_env(DISPLAY=xvfb, QT_QPA_PLATFORM="xcb", WAYLAND_DISPLAY=None, HOME=str(tmp_path),
                    XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "data"))
    done = subprocess.run([sys.executable, "-c", DRIVER, str(shot), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "platform xcb screen 1360 820" in done.stdout, done.stdout + done.stderr
    image = QImage(str(shot))
    assert (image.width(), image.height()) == (1360, 820)
    colours = {image.pixel(x, y) for x in range(0, 1360, 17) for y in range(0, 820, 11)}
    assert len(colours) > 20, "the screen is (nearly) blank: no window was drawn"
    shutil.copy(shot, SHOTS / "smtpsvc-xcb-window.png")  # for a person to look at


def test_missing_libraries_are_named_with_their_packages() -> None:
    table = {"libc.so.6": "libc6", "libsmtpsvc-absent.so.9": "smtpsvc-absent"}
    assert missing_libraries(table) == {"libsmtpsvc-absent.so.9": "smtpsvc-absent"}
    assert apt_line(["libxcb-icccm4", "libxcb-keysyms1", "libxcb-icccm4"]) == \
        "sudo apt-get install libxcb-icccm4 libxcb-keysyms1"
    assert missing_libraries() == {}, "tests/run installs every library of XCB_LIBRARIES"
    assert len(set(XCB_LIBRARIES.values())) == len(XCB_LIBRARIES)


def test_display_problem_only_where_xcb_would_be_used() -> None:
    assert display_problem({"DISPLAY": ":0"}, platform="win32") is None
    assert display_problem({"QT_QPA_PLATFORM": "offscreen"}, platform="linux") is None
    assert display_problem({"WAYLAND_DISPLAY": "wayland-0"}, platform="linux") is None
    assert "DISPLAY is not set" in (display_problem({"QT_QPA_PLATFORM": "xcb"}, platform="linux") or "")
    assert display_problem({"DISPLAY": ":0"}, platform="linux") is None  # every library is there


def test_qt_libraries_missing_are_named_whatever_the_platform() -> None:
    assert missing_libraries(QT_LIBRARIES) == {}, "tests/run installs every library of QT_LIBRARIES"
    absent = {"libsmtpsvc-absent.so.9": "smtpsvc-absent"}
    for environ in ({"QT_QPA_PLATFORM": "offscreen"}, {"WAYLAND_DISPLAY": "wayland-0"}, {"DISPLAY": ":0"}):
        problem = display_problem(environ, platform="linux", qt_libraries=absent) or ""
        assert "libsmtpsvc-absent.so.9" in problem and "sudo apt-get install smtpsvc-absent" in problem, environ
    # No display at all: that is said first (a server without Qt's libraries needs `smtpsvc serve`, not them).
    assert "DISPLAY is not set" in (display_problem({}, platform="linux", qt_libraries=absent) or "")


def test_smtpsvc_without_display_says_so_instead_of_aborting(tmp_path: Path) -> None:
    env = child_env(DISPLAY=None, WAYLAND_DISPLAY=None, QT_QPA_PLATFORM=None, HOME=str(tmp_path))
    done = subprocess.run([sys.executable, "-m", "app.cli", "--mailroot", str(tmp_path / "Mailroot")], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "no display to open the manager window on" in done.stderr and "smtpsvc serve" in done.stderr
    assert not (tmp_path / "Mailroot").exists()  # nothing was started


def test_desktop_entry_installs_and_removes(tmp_path: Path) -> None:
    env = child_env(XDG_DATA_HOME=str(tmp_path / "share"))
    done = subprocess.run([sys.executable, "-m", "app.cli", "desktop-entry"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    entry = tmp_path / "share" / "applications" / "smtpsvc.desktop"
    icon = tmp_path / "share" / "icons" / "hicolor" / "scalable" / "apps" / "smtpsvc.svg"
    assert f"installed {entry}" in done.stdout and icon.read_bytes().startswith(b"<svg")
    parsed = configparser.ConfigParser(interpolation=None)
    parsed.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parsed.read(entry, encoding="utf-8")
    fields = parsed["Desktop Entry"]
    assert (fields["Type"], fields["Name"], fields["Icon"], fields["Terminal"]) == \
        ("Application", "SMTP Service Manager", "smtpsvc", "false")
    assert "app.cli" in fields["Exec"] or fields["Exec"].endswith("smtpsvc")
    if shutil.which("desktop-file-validate"):
        subprocess.run(["desktop-file-validate", str(entry)], check=True)
    done = subprocess.run([sys.executable, "-m", "app.cli", "desktop-entry", "--remove"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not entry.exists() and not icon.exists()
