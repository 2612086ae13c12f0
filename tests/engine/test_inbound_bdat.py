"""CHUNKING and BINARYMIME (RFC 3030) against the real engine on loopback, with raw commands over a socket."""

from __future__ import annotations

import asyncio
import socket

from engine_support import Running, start_server
from smtp_helpers import RawSMTP

from engine.store.envelope import split_envelope


def envelope(raw: RawSMTP, mail: str = "MAIL FROM:<a@example.test>") -> list[str]:
    return [raw.cmd("EHLO c"), raw.cmd(mail), raw.cmd("RCPT TO:<b@example.test>")]


def bdat(raw: RawSMTP, data: bytes, last: bool = False) -> str:
    """One BDAT command with its chunk (no CRLF after it: the chunk is counted, not ended)."""
    raw.send(b"BDAT %d%s\r\n" % (len(data), b" LAST" if last else b"") + data)
    return raw.read_reply()[-1]


def received_removed(data: bytes) -> bytes:
    """The message as the client sent it: our Received header (its lines start with tabs after the first) cut off."""
    lines = data.split(b"\r\n")
    index = 1
    while lines[index].startswith(b"\t"):
        index += 1
    return b"\r\n".join(lines[index:])


async def test_chunks_make_one_message(running: Running) -> None:
    message = b"Subject: chunks\r\n\r\nfirst part, " + b"x" * 300_000 + b"\r\nand the end\r\n.\r\n"

    def talk() -> list[str]:
        raw = RawSMTP(running.port)
        out = envelope(raw)
        out.append(bdat(raw, message[:20]))
        out.append(bdat(raw, message[20:-20]))
        out.append(bdat(raw, message[-20:], last=True))
        out.append(raw.cmd("QUIT"))
        raw.close()
        return out

    out = await asyncio.to_thread(talk)
    assert out[3:5] == ["250 2.0.0 20 octets received", f"250 2.0.0 {len(message) - 40} octets received"]
    assert out[5].startswith("250 2.6.0") and out[6].startswith("221")
    await running.wait_for(lambda: len(running.drop_files()) == 1)  # (a lone "." last line may go by the Queue)
    [drop] = running.drop_files()
    data = drop.read_bytes()
    # Not dot-stuffed: BDAT carries the message as it is (a Drop file ending in a lone "." line is stored stuffed).
    stored = received_removed(data[split_envelope(data)[2]:])
    assert stored in (message, message[:-3] + b"..\r\n.\r\n")


async def test_binarymime_only_with_bdat_and_stored_byte_exact(running: Running) -> None:
    binary = bytes(range(256)) * 4 + b"\r\n.\r\nQUIT\r\n\n.\n\x00"
    message = b"Subject: binary\r\nContent-Transfer-Encoding: binary\r\n\r\n" + binary

    def talk() -> list[str]:
        raw = RawSMTP(running.port)
        out = envelope(raw, "MAIL FROM:<a@example.test> BODY=BINARYMIME")
        out.append(raw.cmd("DATA"))
        out.append(bdat(raw, message, last=True))
        out.append(raw.cmd("NOOP"))
        raw.close()
        return out

    out = await asyncio.to_thread(talk)
    assert out[1].startswith("250 2.1.0")
    assert out[3] == "503 5.6.1 BODY=BINARYMIME requires BDAT"
    assert out[4].startswith("250 2.6.0") and out[5].startswith("250 2.0.0")
    [drop] = running.drop_files()
    data = drop.read_bytes()
    assert data.endswith(binary)


async def test_data_after_bdat_is_refused_and_the_session_goes_on(running: Running) -> None:
    def talk() -> list[str]:
        raw = RawSMTP(running.port)
        out = envelope(raw)
        out.append(bdat(raw, b"hello"))
        out.append(raw.cmd("DATA"))
        out += [raw.cmd("RSET"), raw.cmd("MAIL FROM:<a@example.test>"), raw.cmd("RCPT TO:<b@example.test>"),
                raw.cmd("DATA"), raw.cmd(b"Subject: after\r\n\r\nby DATA\r\n.")]
        raw.close()
        return out

    out = await asyncio.to_thread(talk)
    assert out[3] == "250 2.0.0 5 octets received"
    assert out[4] == "503 5.5.1 DATA not permitted in a BDAT transaction"
    assert out[8].startswith("354") and out[9].startswith("250 2.6.0")
    assert len(running.drop_files()) == 1


async def test_size_limit_counted_across_chunks_connection_stays_usable(config_factory) -> None:
    run = await start_server(config_factory(max_message_size_kb=1))
    try:
        def talk() -> list[str]:
            raw = RawSMTP(run.port)
            out = envelope(raw)
            out.append(bdat(raw, b"a" * 700))
            out.append(bdat(raw, b"b" * 700, last=True))  # 1400 > 1024: read, then refused
            out += envelope(raw)[1:]
            out.append(bdat(raw, b"Subject: ok\r\n\r\n", last=True))
            raw.close()
            return out

        out = await asyncio.to_thread(talk)
        assert out[3] == "250 2.0.0 700 octets received"
        assert out[4] == "552 5.3.4 Message size exceeds fixed maximum message size"
        assert out[5].startswith("250 2.1.0") and out[6].startswith("250 2.1.5")
        assert out[7].startswith("250 2.6.0")
        assert len(run.drop_files()) == 1
        assert (await run.server.counters_snapshot())["Messages Refused for Size"] == 1
    finally:
        await run.server.stop()


async def test_refused_bdat_chunk_is_consumed_never_read_as_commands(running: Running) -> None:
    def talk() -> list[str]:
        raw = RawSMTP(running.port)
        out = [raw.cmd("EHLO c")]
        smuggled = b"MAIL FROM:<evil@example.test>\r\nRCPT TO:<b@example.test>\r\n"
        out.append(bdat(raw, smuggled, last=True))  # no MAIL yet: 503 after the bytes
        out.append(raw.cmd("RCPT TO:<b@example.test>"))  # the smuggled MAIL never ran
        raw.close()
        return out

    out = await asyncio.to_thread(talk)
    assert out[1] == "503 5.5.1 Need MAIL command"
    assert out[2] == "503 5.5.1 Need MAIL command"


async def test_pipelined_transaction_with_bdat(running: Running) -> None:
    message = b"Subject: piped\r\n\r\nall in one write\r\n"

    def talk() -> list[str]:
        raw = RawSMTP(running.port)
        raw.cmd("EHLO c")
        raw.send(b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nBDAT %d LAST\r\n" % len(message)
                 + message + b"NOOP\r\nQUIT\r\n")
        out = [raw.read_reply()[-1] for _ in range(5)]
        raw.close()
        return out

    out = await asyncio.to_thread(talk)
    assert [line[:9] for line in out] == ["250 2.1.0", "250 2.1.5", "250 2.6.0", "250 2.0.0", "221 2.0.0"]
    [drop] = running.drop_files()
    assert drop.read_bytes().endswith(message)


async def test_a_client_that_half_closes_after_its_pipelined_bdat_and_quit_is_answered(running: Running) -> None:
    """Exim's way: MAIL, RCPT, BDAT … LAST with the message and QUIT in one go, then shutdown(SHUT_WR)."""
    message = b"Subject: half-closed\r\n\r\nthe client sends nothing more after this\r\n"

    def talk() -> list[str]:
        raw = RawSMTP(running.port)
        raw.cmd("EHLO c")
        raw.send(b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nBDAT %d LAST\r\n" % len(message)
                 + message + b"QUIT\r\n")
        raw.sock.shutdown(socket.SHUT_WR)
        out = [raw.read_reply()[-1] for _ in range(4)]
        out.append("closed" if raw.closed() else "open")
        raw.close()
        return out

    out = await asyncio.to_thread(talk)
    assert [line[:9] for line in out] == ["250 2.1.0", "250 2.1.5", "250 2.6.0", "221 2.0.0", "closed"]
    [drop] = running.drop_files()
    assert drop.read_bytes().endswith(message)


async def test_a_half_close_mid_message_stores_nothing_and_closes(running: Running) -> None:
    def talk() -> list[str]:
        raw = RawSMTP(running.port)
        envelope(raw)
        raw.send(b"BDAT 100 LAST\r\nonly part of it")
        raw.sock.shutdown(socket.SHUT_WR)
        out = ["closed" if raw.closed() else "open"]
        raw.close()
        return out

    assert await asyncio.to_thread(talk) == ["closed"]
    assert running.drop_files() == [] and running.queue_files() == []


async def test_bdat_with_an_unreadable_size_closes(running: Running) -> None:
    def talk() -> tuple[str, bool]:
        raw = RawSMTP(running.port)
        envelope(raw)
        line = raw.cmd("BDAT lots")
        closed = raw.closed()
        raw.close()
        return line, closed

    line, closed = await asyncio.to_thread(talk)
    assert line.startswith("421 4.5.4 Syntax: BDAT size [LAST]")
    assert closed
