"""The README's window screenshots (offscreen, against real engines): Domains, and two computers in one tree.

    QT_QPA_PLATFORM=offscreen python bench/screenshots.py resources/
    QT_QPA_PLATFORM=offscreen python bench/screenshots.py resources/ --no-computers   # only screenshot.png

``screenshot.png``: the manager with its engine embedded (temporary Mailroot, a free loopback port), five domains
(local default, alias, remote by DNS, remote by smart host, one with TLS required), the Domains node selected,
two SMTP clients connected. ``screenshot-computers.png``: the same window with a second computer, a
``smtpsvc serve`` child whose admin server listens on loopback (self-signed certificate, one operator), added as
File → Connect to Computer… does; that computer's Domains node selected. The Queue screenshot is made by
``bench/queue_view.py --screenshot``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import smtplib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO))

from bench.common import free_port, spawn_serve, wait_for_banner, wait_until  # noqa: E402
from bench.remote_window import OPERATOR, PASSWORD, _listening, prepare  # noqa: E402

SIZE = (1100, 680)
COMPUTERS_WIDTH = 1240
LOCAL_CONFIG = """\
[server]
fqdn = "mail.contoso.example"

[[domain]]
name = "contoso.example"
type = "default"

[[domain]]
name = "mail.contoso.example"
type = "alias"

[[domain]]
name = "*.fabrikam.example"
type = "remote"
relay_allowed = true

[[domain]]
name = "partner.example"
type = "remote"
route = "smarthost"
smart_host = "relay.partner.example:587"
tls_required = true

[[domain]]
name = "tailspin.example"
type = "remote"
route = "smarthost"
smart_host = "[192.0.2.25]"
"""
REMOTE_CONFIG = """\
[server]
fqdn = "mx2.fabrikam.example"
{admin}
[[domain]]
name = "fabrikam.example"
type = "default"

[[domain]]
name = "northwind.example"
type = "remote"
relay_allowed = true
"""


@contextlib.contextmanager
def remote_serve(workdir: Path) -> Iterator[str]:
    """A ``smtpsvc serve`` with the admin server on loopback; yields its URL, stopped (by PID) after."""
    workdir.mkdir(parents=True, exist_ok=True)
    admin_port, port = free_port(), free_port()
    config = workdir / "smtpsvc.toml"
    admin = prepare(workdir, admin_port)
    config.write_text(REMOTE_CONFIG.format(admin=admin))
    proc = spawn_serve(sys.executable, workdir / "Mailroot", port, "fabrikam.example", config, workdir / "serve.log")
    try:
        wait_for_banner("127.0.0.1", port, 60, alive=lambda: proc.poll() is None)
        if not wait_until(lambda: _listening(admin_port), 30):
            raise RuntimeError(f"the admin server did not start; see {workdir / 'serve.log'}")
        yield f"https://127.0.0.1:{admin_port}"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def shoot(out: Path, computers: bool) -> None:
    import qasync
    from PySide6.QtCore import QEvent, QSettings
    from PySide6.QtWidgets import QApplication

    from app.manager import Manager, application
    from ui.scope import Node

    with tempfile.TemporaryDirectory(prefix="screenshots-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        url = stack.enter_context(remote_serve(work / "remote")) if computers else ""
        app = application()
        (work / "local.toml").write_text(LOCAL_CONFIG)
        args = argparse.Namespace(config=work / "local.toml", mailroot=work / "Mailroot", listen=["127.0.0.1:0"],
                                  domain=None)
        manager = Manager(args, QSettings(str(work / "ui.ini"), QSettings.Format.IniFormat))
        manager.messages.show_box = lambda title, text, unexpected: print(f"{title}: {text}", file=sys.stderr)
        manager.computers.confirm_certificate = lambda host_port, fingerprint: True  # type: ignore[method-assign]
        error = manager.start_engine()
        if error is not None:
            raise RuntimeError(str(error))
        loop = qasync.QEventLoop(app)
        asyncio.set_event_loop(loop)
        window = manager.window
        window.resize(*SIZE)
        window.show()
        port = manager.host.bound_addresses[0][1]
        clients = [smtplib.SMTP("127.0.0.1", port, timeout=10) for _ in range(2)]  # "2 sessions" in the status bar
        for client in clients:
            client.ehlo("workstation.contoso.example")

        async def run() -> None:
            window.select_node(Node.DOMAINS)
            await asyncio.sleep(1.5)  # the domains listed, the sessions counted
            window.grab().save(str(out / "screenshot.png"))
            if computers:
                # The panes at the right need 810 px (the Queue pane's filter bar): a wider window lets the tree
                # widen for the remote computer's "name (https://address:port)" when it is added.
                window.resize(COMPUTERS_WIDTH, SIZE[1])
                await asyncio.sleep(0.3)
                computer = await manager.computers.connect(url, OPERATOR, PASSWORD)
                if computer is None:
                    raise RuntimeError(f"could not connect to {url}")
                computer.select_node(Node.DOMAINS)
                await asyncio.sleep(1.5)
                window.grab().save(str(out / "screenshot-computers.png"))
                await manager.computers.drain()
            await window.runner.drain()

        try:
            loop.run_until_complete(asyncio.wait_for(run(), 120))
        finally:
            for client in clients:
                with contextlib.suppress(OSError, smtplib.SMTPException):
                    client.quit()
            window.close()
            manager.shutdown()
            window.deleteLater()
            QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
            gc.collect()
            loop.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="directory the PNGs are written to")
    parser.add_argument("--no-computers", action="store_true", help="only the Domains screenshot")
    args = parser.parse_args(argv)
    shoot(args.out.resolve(), not args.no_computers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
