"""The sentences for operating-system errors: each names the cause and what to do, never Python's wording."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from engine.oserrors import bind_failure, mailroot_failure


@pytest.mark.parametrize(("code", "says"), [
    (errno.EADDRINUSE, "the address is already in use"),
    (errno.EADDRNOTAVAIL, "this computer has no such IP address"),
    (errno.EACCES, "ports below 1024 need administrator rights"),
    (errno.ENETUNREACH, "network is unreachable"),  # anything else: the system's own short text
])
def test_bind_failure(code: int, says: str) -> None:
    text = bind_failure("192.0.2.1:25", OSError(code, "[Errno x] decorated by asyncio"))
    assert text.startswith("cannot listen on 192.0.2.1:25: ") and says in text and "Errno" not in text


def test_mailroot_failure_names_the_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    text = mailroot_failure(tmp_path / "file" / "Mailroot", OSError(errno.ENOTDIR, "Not a directory"))
    assert f"cannot use the Mailroot {tmp_path}/file/Mailroot: {tmp_path}/file is a file, not a folder." in text
    assert text.endswith("--mailroot DIR or `smtpsvc config set mailroot DIR`")


@pytest.mark.parametrize(("code", "says"), [(errno.EROFS, "the filesystem is read-only"),
                                            (errno.ENOSPC, "the disk is full"), (errno.EACCES, "permission denied")])
def test_mailroot_failure_reasons(tmp_path: Path, code: int, says: str) -> None:
    assert f": {says}. Choose another place" in mailroot_failure(tmp_path / "Mailroot", OSError(code, "x"))
