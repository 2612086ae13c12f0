"""Outbound CHUNKING (RFC 3030): which transfer for which hop and message (a table), then real receivers on
loopback — a scripted hop that answers BDAT and DATA alike as told (the same per-recipient outcome for both, a
refused chunk ends the message, a hang-up mid-chunk defers it), and smtpsvc itself, which offers CHUNKING and
BINARYMIME, as the next hop of a relay: the bytes in its Drop are the original's, a BINARYMIME message included."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from engine_support import Running, free_port, make_config, start_server
from smtp_helpers import RawSMTP

from engine.conf.config import Config, DomainConfig
from engine.log import formats
from engine.smtp.outbound import DEFERRED, DELIVERED, FAILED, Job, Outcome, Settings, Transcript, deliver
from engine.smtp.resolver import Target
from engine.smtp.transfer import CHUNK_SIZE, Hop, Transfer, choose, chunk_spans
from engine.store.envelope import split_envelope

NONE, CHUNKING, BOTH = Hop(), Hop(chunking=True, eightbitmime=True), Hop(True, True, True)


@pytest.mark.parametrize(("hop", "binary", "eight_bit", "transfer"), [
    # a message that is not BINARYMIME: BDAT whenever CHUNKING is offered; BODY=8BITMIME for 8-bit content
    (NONE, False, False, Transfer("DATA", "", False)),
    (NONE, False, True, Transfer("DATA", "", False)),  # no 8BITMIME: sent as it is (as before, as Postfix)
    (Hop(eightbitmime=True), False, True, Transfer("DATA", "8BITMIME", False)),
    (Hop(eightbitmime=True), False, False, Transfer("DATA", "", False)),
    (Hop(chunking=True), False, False, Transfer("BDAT", "", False)),
    (Hop(chunking=True), False, True, Transfer("BDAT", "", False)),
    (CHUNKING, False, True, Transfer("BDAT", "8BITMIME", False)),
    (BOTH, False, True, Transfer("BDAT", "8BITMIME", False)),
    (BOTH, False, False, Transfer("BDAT", "", False)),  # BINARYMIME is never said of a message that is not
    # BINARYMIME: unconverted only by BDAT to a hop with CHUNKING and BINARYMIME, else converted (RFC 3030 §3)
    (BOTH, True, False, Transfer("BDAT", "BINARYMIME", False)),
    (BOTH, True, True, Transfer("BDAT", "BINARYMIME", False)),
    (Hop(chunking=True, binarymime=True), True, True, Transfer("BDAT", "BINARYMIME", False)),
    (CHUNKING, True, True, Transfer("BDAT", "", True)),
    (Hop(binarymime=True, eightbitmime=True), True, True, Transfer("DATA", "", True)),  # BINARYMIME without BDAT
    (NONE, True, False, Transfer("DATA", "", True)),
])
def test_choose(hop: Hop, binary: bool, eight_bit: bool, transfer: Transfer) -> None:
    assert choose(hop, binary, eight_bit) == transfer


@pytest.mark.parametrize(("chunking", "binarymime", "eightbitmime", "binary", "eight_bit"),
                         list(itertools.product([False, True], repeat=5)))
def test_choose_rules_hold_for_every_combination(chunking: bool, binarymime: bool, eightbitmime: bool,
                                                 binary: bool, eight_bit: bool) -> None:
    got = choose(Hop(chunking, binarymime, eightbitmime), binary, eight_bit)
    assert (got.command == "BDAT") == chunking
    assert (got.body == "BINARYMIME") == (binary and chunking and binarymime)
    assert got.convert == (binary and not (chunking and binarymime))
    if got.convert:  # asked again after the conversion: never BINARYMIME, never converted twice
        again = choose(Hop(chunking, binarymime, eightbitmime), False, eight_bit)
        assert again.command == got.command and not again.convert and again.body != "BINARYMIME"


def test_hop_from_ehlo_keywords() -> None:
    assert Hop.of({"pipelining": "", "chunking": "", "8bitmime": ""}) == CHUNKING
    assert Hop.of({"chunking": "", "binarymime": "", "8bitmime": "", "size": "0"}) == BOTH
    assert Hop.of({}) == NONE


@pytest.mark.parametrize(("length", "size", "spans"), [
    (0, 10, [(0, 0)]),  # an empty message is one empty chunk: BDAT 0 LAST
    (1, 10, [(0, 1)]),
    (10, 10, [(0, 10)]),
    (11, 10, [(0, 10), (10, 11)]),
    (25, 10, [(0, 10), (10, 20), (20, 25)]),
    (CHUNK_SIZE, CHUNK_SIZE, [(0, CHUNK_SIZE)]),
])
def test_chunk_spans(length: int, size: int, spans: list[tuple[int, int]]) -> None:
    assert chunk_spans(length, size) == spans


def test_chunk_spans_refuses_a_size_below_one() -> None:
    with pytest.raises(ValueError, match="positive"):
        chunk_spans(5, 0)


# -- a scripted hop on a real socket -------------------------------------------------------------------------------


@dataclass
class Script:
    chunking: bool = True
    binarymime: bool = True  # (with CHUNKING only)
    pipelining: bool = True
    reject: dict[str, str] = field(default_factory=dict)  # recipient -> reply to its RCPT
    at_end: str = "250 2.0.0 Ok: queued"  # the reply to the end of DATA or to BDAT LAST
    at_chunk: dict[int, str] = field(default_factory=dict)  # chunk number (from 0) -> its reply, once
    hang_up_in_chunk: int | None = None  # close after half of this chunk


@dataclass
class Heard:
    commands: list[str] = field(default_factory=list)  # every command line, without its data
    messages: list[bytes] = field(default_factory=list)  # what ended in a 2xx (BDAT's octets, DATA unstuffed)
    chunk_octets: int = 0


@contextlib.asynccontextmanager
async def scripted_hop(port: int, script: Script) -> AsyncIterator[Heard]:
    """A next hop that offers what ``script`` says and answers as it says: DATA and BDAT (with or without
    PIPELINING), MAIL, RCPT, RSET, QUIT. A refused chunk is still read, as RFC 3030 asks."""
    heard = Heard()
    sessions: list[asyncio.Task[None]] = []

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 hop.test ESMTP\r\n")
        chunks: list[bytes] = []
        number = 0
        failed = False
        try:
            while line := await reader.readline():
                text = line.decode().rstrip("\r\n")
                heard.commands.append(text)
                verb, _, argument = text.partition(" ")
                reply = "250 2.0.0 Ok"
                if verb == "EHLO":
                    keywords = ["SIZE 100000000", "8BITMIME"] + ["PIPELINING"] * script.pipelining \
                        + ["CHUNKING"] * script.chunking + ["BINARYMIME"] * (script.chunking and script.binarymime)
                    reply = "\r\n".join(f"250-{k}" for k in ["hop.test", *keywords[:-1]]) + f"\r\n250 {keywords[-1]}"
                elif verb == "MAIL":
                    chunks, number, failed = [], 0, False
                elif verb == "RCPT":
                    address = argument.split("<", 1)[1].split(">", 1)[0]
                    reply = script.reject.get(address, "250 2.1.5 Ok")
                elif verb == "DATA":
                    writer.write(b"354 go ahead\r\n")
                    data = await reader.readuntil(b"\r\n.\r\n")
                    body = b"\r\n".join(line[1:] if line.startswith(b".") else line
                                        for line in data[:-3].split(b"\r\n"))
                    reply = script.at_end
                    if reply.startswith("2"):
                        heard.messages.append(body)
                elif verb == "BDAT":
                    size, *last = argument.split()
                    if number == script.hang_up_in_chunk:
                        await reader.readexactly(int(size) // 2)
                        return
                    chunk = await reader.readexactly(int(size))
                    heard.chunk_octets += len(chunk)
                    chunks.append(chunk)
                    reply = "503 5.5.1 an earlier chunk was refused" if failed else script.at_chunk.pop(number, reply)
                    if last and not failed and reply.startswith("2"):
                        reply = script.at_end
                        if reply.startswith("2"):
                            heard.messages.append(b"".join(chunks))
                    failed = failed or not reply.startswith("2")
                    number += 1
                elif verb == "QUIT":
                    writer.write(b"221 2.0.0 Bye\r\n")
                    break
                writer.write(reply.encode() + b"\r\n")
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def started(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sessions.append(asyncio.ensure_future(session(reader, writer)))

    server = await asyncio.start_server(started, "127.0.0.4", port, limit=1 << 24)
    try:
        yield heard
    finally:
        server.close()
        await asyncio.gather(*sessions)
        await server.wait_closed()


MESSAGE = b"Subject: chunked\r\n\r\n.a line with a dot\r\n.\r\nno line end at the end"


def _job(content: bytes = MESSAGE, recipients: tuple[str, ...] = ("a@remote.test", "b@remote.test"),
         binary: bool = False) -> Job:
    return Job("Q1", "s@example.test", list(recipients), content, binarymime=binary)


async def _deliver(port: int, *jobs: Job) -> list[str]:
    transcript = Transcript()
    await deliver([Target("mx.remote.test", "127.0.0.4", port)], list(jobs), Settings("out.test", timeout=10),
                  transcript)
    return [line.split(" ", 1)[1] for line in transcript.lines]


@pytest.mark.parametrize("pipelining", [True, False])
async def test_bdat_carries_the_octets_as_they_are(pipelining: bool) -> None:
    """No dot-stuffing, no CRLF.CRLF, no line end added: the hop gets the message exactly, in one BDAT LAST."""
    port = free_port()
    async with scripted_hop(port, Script(pipelining=pipelining)) as heard:
        job = _job()
        said = await _deliver(port, job)
    assert heard.messages == [MESSAGE]
    assert all(o.status == DELIVERED for o in job.outcomes.values()) and job.sent == 1
    assert job.bytes_sent == len(MESSAGE)
    mail = next(n for n, line in enumerate(said) if line.startswith(">>> MAIL"))
    assert said[mail] == f">>> MAIL FROM:<s@example.test> SIZE={len(MESSAGE)}"
    assert f">>> BDAT {len(MESSAGE)} LAST" in said and not any("DATA" in line for line in said)
    if pipelining:  # MAIL, both RCPTs and the chunk in one write, before any reply
        heads = [line[:8] for line in said[mail:mail + 5]]
        assert heads == [">>> MAIL", ">>> RCPT", ">>> RCPT", ">>> BDAT", "<<< 250 "]


def big_text(size: int) -> bytes:
    """A message of about ``size`` octets in 76-character lines of varied text."""
    return b"Subject: big\r\n\r\n" + b"".join(b"%076d\r\n" % n for n in range(size // 78))


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_a_large_message_goes_in_bounded_chunks_and_arrives_whole(loop: str) -> None:
    """Three chunks, each written when the socket has taken the one before; on the engine's uvloop too."""
    content = big_text(2 * CHUNK_SIZE + 1000)
    port = free_port()
    async with scripted_hop(port, Script()) as heard:
        job = _job(content)
        if loop == "uvloop":
            import uvloop
            said = await asyncio.to_thread(uvloop.run, _deliver(port, job))
        else:
            said = await _deliver(port, job)
    assert heard.messages == [content]
    sizes = [line for line in said if line.startswith(">>> BDAT")]
    last = len(content) - 2 * CHUNK_SIZE
    assert sizes == [f">>> BDAT {CHUNK_SIZE}", f">>> BDAT {CHUNK_SIZE}", f">>> BDAT {last} LAST"]


async def test_a_hop_without_chunking_gets_data_and_the_transcript_says_the_real_size() -> None:
    port = free_port()
    async with scripted_hop(port, Script(chunking=False)) as heard:
        job = _job()
        said = await _deliver(port, job)
    assert heard.messages == [MESSAGE + b"\r\n"]  # (DATA ends the last line)
    assert f">>> DATA ({len(MESSAGE)} bytes)" in said and not any("BDAT" in line for line in said)


REFUSALS = ["452 4.3.1 Insufficient system storage", "554 5.6.0 Message content rejected"]


@pytest.mark.parametrize("refusal", REFUSALS)
@pytest.mark.parametrize("pipelining", [True, False])
async def test_a_refused_bdat_is_a_refused_end_of_data(refusal: str, pipelining: bool) -> None:
    """The same per-recipient outcomes whether the hop refuses the end of DATA or the BDAT LAST: the refusal for
    the recipients it had taken, the RCPT's own reply for one it refused; nothing is delivered."""
    outcomes: dict[bool, dict[str, Outcome]] = {}
    for chunking in (False, True):
        port = free_port()
        script = Script(chunking=chunking, pipelining=pipelining, at_end=refusal,
                        reject={"b@remote.test": "550 5.1.1 no such user"})
        async with scripted_hop(port, script) as heard:
            job = _job(recipients=("a@remote.test", "b@remote.test", "c@remote.test"))
            said = await _deliver(port, job)
        assert heard.messages == [] and job.sent == 0 and job.bytes_sent == 0
        assert any(line.startswith(">>> BDAT" if chunking else ">>> DATA") for line in said)
        outcomes[chunking] = job.outcomes
    assert outcomes[True] == outcomes[False]
    status = DEFERRED if refusal.startswith("4") else FAILED
    assert outcomes[True]["a@remote.test"] == Outcome(status, refusal, refusal.split()[1], "mx.remote.test")
    assert outcomes[True]["c@remote.test"] == outcomes[True]["a@remote.test"]
    assert outcomes[True]["b@remote.test"].reply == "550 5.1.1 no such user"


async def test_a_refused_chunk_ends_the_message_and_the_transaction_is_reset() -> None:
    """Lock-step (no PIPELINING): after a 452 to the first of three chunks no further chunk is sent (RFC 3030
    §4.2); the transaction is reset and the next message goes on the same connection."""
    content = big_text(2 * CHUNK_SIZE + 1000)
    port = free_port()
    async with scripted_hop(port, Script(pipelining=False, at_chunk={0: REFUSALS[0]})) as heard:
        first, second = _job(content), _job()
        said = await _deliver(port, first, second)
    assert heard.chunk_octets == CHUNK_SIZE + len(MESSAGE)  # the refused chunk, then the next message
    assert heard.messages == [MESSAGE]
    assert all(o.status == DEFERRED and o.reply == REFUSALS[0] for o in first.outcomes.values())
    assert all(o.status == DELIVERED for o in second.outcomes.values())
    refused = said.index(f"<<< {REFUSALS[0]}")
    assert said[refused + 1] == ">>> RSET"
    assert [c.split()[0] for c in heard.commands].count("BDAT") == 2


async def test_a_refused_chunk_with_pipelining_gives_the_refusal_not_a_later_reply() -> None:
    content = big_text(2 * CHUNK_SIZE + 1000)
    port = free_port()
    async with scripted_hop(port, Script(at_chunk={0: "554 5.3.4 Message too big for system"})) as heard:
        job = _job(content)
        said = await _deliver(port, job)
    assert heard.messages == []
    assert all(o.status == FAILED and o.reply == "554 5.3.4 Message too big for system"
               for o in job.outcomes.values())
    assert said[-4:-2] == [">>> RSET", "<<< 250 2.0.0 Ok"]  # then QUIT


@pytest.mark.parametrize("chunk", [0, 1])
async def test_a_hop_that_dies_mid_chunk_defers_and_the_retry_delivers_once(chunk: int) -> None:
    content = big_text(CHUNK_SIZE + 1000)
    port = free_port()
    async with scripted_hop(port, Script(hang_up_in_chunk=chunk)) as heard:
        job = _job(content)
        await _deliver(port, job)
    assert heard.messages == []
    assert all(o.status == DEFERRED and o.enhanced == "4.4.2" for o in job.outcomes.values()), job.outcomes
    async with scripted_hop(port, Script()) as heard:  # the retry: the message is sent again, whole
        retry = _job(content)
        await _deliver(port, retry)
    assert heard.messages == [content]
    assert all(o.status == DELIVERED for o in retry.outcomes.values())


SIGNED = (b"Subject: signed\r\nMIME-Version: 1.0\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-"
          b"signature\"; micalg=sha-256; boundary=\"s\"\r\n\r\n--s\r\nContent-Type: application/octet-stream\r\n"
          b"Content-Transfer-Encoding: binary\r\n\r\n\x00\x01\r\x02\n.\r\n--s\r\nContent-Type: application/pkcs7-"
          b"signature\r\nContent-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHAqCAMIACAQEx\r\n--s--\r\n")


@pytest.mark.parametrize(("chunking", "binarymime", "sent"), [
    (True, True, "BDAT"),  # unconverted, BODY=BINARYMIME: even a signed one goes (nothing to convert)
    (True, False, None),  # CHUNKING alone: it would have to be converted, which would break its signature
    (False, False, None),
])
async def test_a_signed_binarymime_message_goes_only_to_a_hop_that_takes_binarymime(
        chunking: bool, binarymime: bool, sent: str | None) -> None:
    port = free_port()
    async with scripted_hop(port, Script(chunking=chunking, binarymime=binarymime)) as heard:
        job = _job(SIGNED, binary=True)
        said = await _deliver(port, job)
    if sent:
        assert heard.messages == [SIGNED] and all(o.status == DELIVERED for o in job.outcomes.values())
        assert any(line.startswith(">>> MAIL") and line.endswith(" BODY=BINARYMIME") for line in said)
    else:
        assert heard.messages == [] and not any(line.startswith(">>> MAIL") for line in said)
        assert all(o.status == FAILED and o.enhanced == "5.6.3" for o in job.outcomes.values())


async def test_a_binarymime_message_to_a_hop_with_chunking_alone_is_converted_and_sent_by_bdat() -> None:
    message = (b"Subject: bin\r\nContent-Transfer-Encoding: binary\r\nContent-Type: image/png\r\n\r\n"
               b"\x89PNG\r\n\x1a\n\x00")
    port = free_port()
    async with scripted_hop(port, Script(binarymime=False)) as heard:
        job = _job(message, binary=True)
        said = await _deliver(port, job)
    [got] = heard.messages
    assert b"Content-Transfer-Encoding: base64\r\n" in got and b"\x00" not in got
    assert any(line.endswith(f"converted for BDAT ({len(got)} bytes)") for line in said)
    assert f">>> BDAT {len(got)} LAST" in said and not any("BINARYMIME" in line for line in said if ">>>" in line)
    assert all(o.status == DELIVERED for o in job.outcomes.values())


# -- smtpsvc as the next hop ---------------------------------------------------------------------------------------


ATTACHMENT = random.Random(3030).randbytes(200_000) + b"\r\n.\r\n\n\r\x00"  # a lone dot line, bare CR/LF, NUL


def binary_message() -> bytes:
    return (b"From: s@example.test\r\nTo: x@relay.test\r\nSubject: binary attachment\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"=b=\"\r\n\r\n"
            b"--=b=\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
            b"--=b=\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"
            + ATTACHMENT + b"\r\n--=b=--\r\n")


def send_bdat(port: int, message: bytes, body: str = "BINARYMIME") -> list[str]:
    """One message into smtpsvc by BDAT (two chunks), to x@relay.test."""
    raw = RawSMTP(port)
    replies = [raw.cmd("EHLO client.test"), raw.cmd(f"MAIL FROM:<s@example.test> BODY={body}"),
               raw.cmd("RCPT TO:<x@relay.test>")]
    half = len(message) // 2
    for data, last in ((message[:half], b""), (message[half:], b" LAST")):
        raw.send(b"BDAT %d%s\r\n" % (len(data), last) + data)
        replies.append(raw.read_reply()[-1])
    replies.append(raw.cmd("QUIT"))
    raw.close()
    return replies


def hop_config(tmp_path: Path) -> Config:
    """smtpsvc as the next hop: relay.test is its own (local) domain, its mail goes to Drop."""
    config = make_config(tmp_path / "hop", fqdn="mx.relay.test")
    return replace(config, domains=(DomainConfig("relay.test", "default"),))


def stored(path: Path) -> bytes:
    """A Drop file's message without the Received fields the hops put on top."""
    data = path.read_bytes()
    message = data[split_envelope(data)[2]:]
    lines = message.split(b"\r\n")
    index = 0
    while lines[index].startswith(b"Received: ") or lines[index][:1] in (b" ", b"\t"):
        index += 1
    assert index >= 2, "both hops' Received fields"
    return b"\r\n".join(lines[index:])


@pytest.fixture
async def relay_pair(tmp_path: Path) -> AsyncIterator[tuple[Running, Running]]:
    hop = await start_server(hop_config(tmp_path))
    relay = await start_server(make_config(tmp_path / "relay", smart_host=f"[127.0.0.1]:{hop.port}",
                                           relay_allowed=("127.0.0.0/8",), outbound_timeout=10,
                                           log_dir=str(tmp_path / "RelayLogs")))
    try:
        yield relay, hop
    finally:
        for run in (relay, hop):
            if run.server.state != "stopped":  # (a test stops the relay to read its whole protocol log)
                await run.server.stop()


async def outbound(relay: Running, directory: Path) -> list[dict[str, str]]:
    """The relay's protocol-log entries of its outbound sessions (the relay is stopped: its log is all written)."""
    await relay.server.stop()
    lines = [line for path in sorted(directory.rglob("*.log")) for line in path.read_text("utf-8").splitlines()]
    return [e for e in formats.parse_w3c(lines) if e["cs-username"] == formats.OUTBOUND_USER]


async def test_a_binarymime_message_crosses_a_relay_unconverted(relay_pair: tuple[Running, Running],
                                                                 tmp_path: Path) -> None:
    """In by BDAT with BODY=BINARYMIME, relayed by BDAT with BODY=BINARYMIME (smtpsvc offers both), and in the
    next hop's Drop byte for byte as sent: NUL, bare CR and LF, the lone dot line and all."""
    relay, hop = relay_pair
    message = binary_message()
    replies = await asyncio.to_thread(send_bdat, relay.port, message)
    assert all(r.startswith(("2", "3")) for r in replies), replies
    await hop.wait_for(lambda: len(hop.drop_files()) == 1, timeout=20)
    await relay.wait_for(lambda: not relay.queue_files(), timeout=20)
    [drop] = hop.drop_files()
    assert stored(drop) == message
    sent = await outbound(relay, tmp_path / "RelayLogs")
    assert [e["cs-method"] for e in sent].count("BDAT") == 1
    [mail] = [e for e in sent if e["cs-method"] == "MAIL"]
    assert "BODY=BINARYMIME" in mail["cs-uri-query"]


@pytest.mark.parametrize("size", [0, 3 * CHUNK_SIZE // 2])
async def test_plain_messages_cross_a_relay_byte_for_byte(relay_pair: tuple[Running, Running], tmp_path: Path,
                                                          size: int) -> None:
    """A message with leading dots and a lone dot line, and one of 1.5 chunks: BDAT to smtpsvc, no stuffing."""
    relay, hop = relay_pair
    lines = [b".leading dot", b".", b"..two", b"end."] + [b"%076d" % n for n in range(size // 78)]
    message = b"From: s@example.test\r\nSubject: dots\r\n\r\n" + b"\r\n".join(lines) + b"\r\n"
    replies = await asyncio.to_thread(send_bdat, relay.port, message, "8BITMIME")
    assert all(r.startswith(("2", "3")) for r in replies), replies
    await hop.wait_for(lambda: len(hop.drop_files()) == 1, timeout=20)
    await relay.wait_for(lambda: not relay.queue_files(), timeout=20)
    [drop] = hop.drop_files()
    assert stored(drop) == message
    methods = [e["cs-method"] for e in await outbound(relay, tmp_path / "RelayLogs")]
    assert "DATA" not in methods and methods.count("BDAT") == (2 if len(message) > CHUNK_SIZE else 1)
