"""The protocol-log rules as tables: escaping, secret masking, the three formats, IIS file names and rollover."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.conf.options import W3C_LOG_FIELDS, W3C_LOG_FIELDS_DEFAULT
from engine.log import formats, naming
from engine.log.formats import Stamp
from engine.log.record import ProtocolRecord

AT = datetime(2026, 3, 5, 7, 8, 9, tzinfo=UTC).timestamp()
STAMP = Stamp(AT, "mx.example.test")


def record(verb: str = "MAIL", argument: str = "FROM:<a@example.test>", reply: str = "250 2.1.0 OK",
           **kw: object) -> ProtocolRecord:
    values: dict[str, object] = dict(direction="in", client_ip="192.0.2.7", username="client.test",
                                     server_ip="127.0.0.1", server_port=25, verb=verb, argument=argument,
                                     reply=reply, sc_bytes=40, cs_bytes=30, time_taken_ms=2)
    values.update(kw)
    return ProtocolRecord(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(("value", "logged"), [
    ("", "-"),
    ("plain", "plain"),
    ("two words", "two+words"),
    ("tab\tand  spaces", "tab+and+spaces"),
    ("line\r\nbreak", "line+break"),
    ("nul\x00bell\x07", "nul+bell+"),
    ("ünïcode", "ünïcode"),
])
def test_escape(value: str, logged: str) -> None:
    assert formats.escape(value) == logged


@pytest.mark.parametrize(("verb", "argument", "reply", "logged"), [
    ("AUTH", "PLAIN AGFsaWNlAHNlY3JldA==", "235 2.7.0 OK", "PLAIN"),
    ("auth", "LOGIN YWxpY2U=", "334 UGFzc3dvcmQ6", "LOGIN"),
    ("AUTH", "", "501 5.5.4 Syntax", ""),
    ("DATA", "", "250 2.6.0 <Q123@mx.example.test> Queued mail for delivery", "<Q123@mx.example.test>"),
    ("DATA", "", "554 5.6.0 bare newline", ""),
    ("EHLO", "client.test", "250 ok", "client.test"),
    ("MAIL", "FROM:<a@b.test> " + "x" * 1000, "250 ok", ("FROM:<a@b.test> " + "x" * 1000)[:512]),
])
def test_loggable_argument_masks_secrets(verb: str, argument: str, reply: str, logged: str) -> None:
    assert formats.loggable_argument(verb, argument, reply) == logged


def test_w3c_line_follows_its_fields_and_parses_back() -> None:
    line = formats.w3c_line(record(argument="FROM:<a@example.test> SIZE=100"), STAMP, W3C_LOG_FIELDS)
    assert line == ("2026-03-05 07:08:09 192.0.2.7 client.test SMTPSVC1 mx.example.test 127.0.0.1 25 MAIL - "
                    "FROM:<a@example.test>+SIZE=100 250 0 40 30 2 SMTP - - - -")
    header = formats.w3c_header("smtpsvc 1", AT, W3C_LOG_FIELDS_DEFAULT)
    assert header[:3] == ["#Software: smtpsvc 1", "#Version: 1.0", "#Date: 2026-03-05 07:08:09"]
    short = ("time", "cs-method", "sc-status")
    lines = [*header, formats.w3c_line(record(), STAMP, W3C_LOG_FIELDS_DEFAULT),
             formats.w3c_fields_directive(short), formats.w3c_line(record(verb="rcpt"), STAMP, short)]
    entries = formats.parse_w3c(lines)
    assert entries[0]["cs-uri-query"] == "FROM:<a@example.test>" and entries[0]["s-port"] == "25"
    assert entries[1] == {"time": "07:08:09", "cs-method": "RCPT", "sc-status": "250"}


def test_w3c_parser_refuses_lines_that_do_not_fit() -> None:
    with pytest.raises(formats.LogLineError):
        formats.parse_w3c(["2026-03-05 x"])
    with pytest.raises(formats.LogLineError):
        formats.parse_w3c(["#Fields: date time", "2026-03-05 07:08:09 extra"])


def test_ncsa_and_iis_lines() -> None:
    ncsa = formats.ncsa_line(record(argument="FROM:<a@x.test> BODY=8BITMIME"), STAMP)
    assert ncsa == ('192.0.2.7 - client.test [05/Mar/2026:07:08:09 +0000] "MAIL FROM:<a@x.test>+BODY=8BITMIME SMTP" '
                    '250 40')
    assert formats.parse_ncsa(ncsa)["cs-uri-query"] == "FROM:<a@x.test>+BODY=8BITMIME"
    iis = formats.iis_line(record(argument="TO:<a,b@x.test>", verb="RCPT"), STAMP)
    assert iis == ("192.0.2.7, client.test, 3/5/2026, 7:08:09, SMTPSVC1, mx.example.test, 127.0.0.1, 2, 30, 40, "
                   "250, 0, RCPT, -, TO:<a%2Cb@x.test>,")
    assert formats.parse_iis(iis)["cs-method"] == "RCPT"
    secret = formats.ncsa_line(record(verb="AUTH", argument="PLAIN c2VjcmV0"), STAMP)
    assert "c2VjcmV0" not in secret


def test_weekly_files_count_weeks_of_the_month_from_sunday() -> None:
    # March 2026 starts on a Sunday; May 2026 on a Friday.
    assert [naming.week_of_month(datetime(2026, 3, d)) for d in (1, 7, 8, 14, 15, 31)] == [1, 1, 2, 2, 3, 5]
    assert [naming.week_of_month(datetime(2026, 5, d)) for d in (1, 2, 3, 9, 10)] == [1, 1, 2, 2, 3]


@pytest.mark.parametrize(("fmt", "period", "name"), [
    ("w3c", "daily", "ex260305.log"),
    ("w3c", "hourly", "ex26030507.log"),
    ("w3c", "weekly", "ex260301.log"),
    ("w3c", "monthly", "ex2603.log"),
    ("w3c", "size", "extend1.log"),
    ("w3c", "unlimited", "extend1.log"),
    ("ncsa", "daily", "nc260305.log"),
    ("iis", "daily", "in260305.log"),
    ("ncsa", "size", "ncsa1.log"),
    ("iis", "size", "inetsv1.log"),
])
def test_file_names_as_iis(fmt: formats.LogFormat, period: naming.LogPeriod, name: str) -> None:
    assert naming.file_name(fmt, period, AT, local_time=False) == name


def test_rollover_rules() -> None:
    late = datetime(2026, 3, 5, 23, 59, 59, tzinfo=UTC).timestamp()
    assert naming.file_name("w3c", "daily", late, False) != naming.file_name("w3c", "daily", late + 1, False)
    assert naming.file_name("w3c", "monthly", late, False) == naming.file_name("w3c", "monthly", late + 1, False)
    assert naming.needs_new_number("size", 90, 20, 100)
    assert not naming.needs_new_number("size", 0, 200, 100)  # one line bigger than the limit still goes in
    assert not naming.needs_new_number("unlimited", 90, 20, 100)
    assert naming.latest_number("w3c", ["extend1.log", "extend12.log", "extend3.log", "nc1.log"]) == 12
    assert naming.latest_number("iis", []) == 1


def test_the_option_table_offers_exactly_the_fields_written() -> None:
    assert tuple(formats.w3c_values(record(), STAMP)) == W3C_LOG_FIELDS


def test_local_time_names_and_ncsa_dates(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")  # UTC+9: 07:08 UTC on the 5th is 16:08 on the 5th; 20:00 UTC is the 6th
    time.tzset()
    try:
        late = datetime(2026, 3, 5, 20, 0, 0, tzinfo=UTC).timestamp()
        assert naming.file_name("w3c", "daily", late, local_time=False) == "ex260305.log"
        assert naming.file_name("w3c", "daily", late, local_time=True) == "ex260306.log"
        assert naming.file_name("w3c", "hourly", AT, local_time=True) == "ex26030516.log"
        line = formats.ncsa_line(record(), Stamp(AT, "mx.example.test", local_time=True))
        assert "[05/Mar/2026:16:08:09 +0900]" in line
        assert formats.w3c_line(record(), Stamp(AT, "mx", local_time=True), ("date", "time")) == "2026-03-05 07:08:09"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
