"""`smtpsvc cert`: make a self-signed server certificate for STARTTLS (and put it in the configuration), or show it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.conf.config import Config, default_config_path
from engine.conf.config_file import load_config, save_config, with_option
from engine.errors import ConfigError
from engine.smtpd.tls import (
    DEFAULT_DAYS,
    CertificateInfo,
    TlsError,
    certificate_info,
    create_self_signed,
    server_context,
)

PROG = "smtpsvc cert"
CERT_NAME = "smtpsvc-cert.pem"
KEY_NAME = "smtpsvc-key.pem"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``cert new`` and ``cert show`` on the main parser's sub-commands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", type=Path, default=argparse.SUPPRESS,
                        help=f"configuration file (default: {str(default_config_path()).replace('%', '%%')})")
    parser = subparsers.add_parser("cert", parents=[common], help="make or show the TLS certificate",
                                   description="The server certificate used for STARTTLS.")
    parser.set_defaults(func=run)
    actions = parser.add_subparsers(dest="cert_action", metavar="ACTION", required=True)
    new = actions.add_parser("new", parents=[common], help="make a self-signed certificate and use it")
    new.add_argument("--fqdn", metavar="NAME", help="name in the certificate (default: the server's FQDN)")
    new.add_argument("--name", metavar="NAME", action="append", default=[], help="another DNS name (repeatable)")
    new.add_argument("--days", type=int, default=DEFAULT_DAYS, help="validity in days (default: %(default)s)")
    new.add_argument("--dir", metavar="DIR", type=Path, help="where to write the files (default: beside the "
                     "configuration file)")
    new.add_argument("--force", action="store_true", help="replace existing certificate and key files")
    actions.add_parser("show", parents=[common], help="describe the configured certificate")


def run(args: argparse.Namespace) -> int:
    path: Path = getattr(args, "config", None) or default_config_path()
    try:
        config = load_config(path)
        if args.cert_action == "new":
            return _new(args, path, config)
        return _show(config)
    except ConfigError as error:
        print(f"{PROG}: " + "\n  ".join(f"{key}: {why}" for key, why in error.problems), file=sys.stderr)
        return 2
    except (TlsError, OSError) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1


def _new(args: argparse.Namespace, path: Path, config: Config) -> int:
    fqdn = args.fqdn or config.fqdn
    if not 1 <= args.days <= 3650:
        print(f"{PROG}: --days must be 1 to 3650", file=sys.stderr)
        return 2
    directory = (args.dir or path.expanduser().parent).expanduser().resolve()
    cert, key = directory / CERT_NAME, directory / KEY_NAME
    existing = [str(p) for p in (cert, key) if p.exists()]
    if existing and not args.force:
        print(f"{PROG}: {' and '.join(existing)} exist already; --force replaces them", file=sys.stderr)
        return 1
    config = with_option(with_option(config, "tls_certificate", str(cert)), "tls_key", str(key))
    info = create_self_signed(fqdn, cert, key, days=args.days, extra_names=tuple(args.name))
    save_config(path, config)
    _describe(info, cert)
    print(f"key: {key} (mode 0600)")
    print(f"configuration: {path} now names them (tls_certificate, tls_key). A running engine uses a replaced "
          "file at its next connection; new paths take effect when the configuration is applied or on restart.")
    return 0


def _show(config: Config) -> int:
    server = config.server
    if not server.tls_certificate:
        print("no certificate configured (STARTTLS is not offered); make one with `smtpsvc cert new`")
        return 1
    info = certificate_info(Path(server.tls_certificate))
    _describe(info, Path(server.tls_certificate))
    server_context(server.tls_certificate, server.tls_key)  # raises TlsError when key and certificate differ
    print(f"key: {server.tls_key or '(in the certificate file)'}; the pair loads")
    return 0


def _describe(info: CertificateInfo, path: Path) -> None:
    print(f"certificate: {path}")
    print(f"  subject: {info.subject}{' (self-signed)' if info.self_signed else ''}")
    print(f"  names: {', '.join(info.names) or '(none)'}")
    print(f"  valid: {info.not_before:%Y-%m-%d %H:%M} to {info.not_after:%Y-%m-%d %H:%M} UTC")
    print(f"  SHA-256: {info.sha256}")
