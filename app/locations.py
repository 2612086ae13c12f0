"""The options `smtpsvc` and `smtpsvc serve` share: where the configuration and the mail live (no imports
of the engine: the command line reads them before it knows which command runs)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_location_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None,
                        help="configuration file (default: %(default)s → the user's config directory)")
    parser.add_argument("--mailroot", type=Path, default=None, help="Mailroot directory (overrides the file)")
    parser.add_argument("--listen", action="append", default=None, metavar="HOST:PORT",
                        help="address to listen on; repeat for several (overrides the file)")
    parser.add_argument("--domain", default=None, help="default domain name (overrides the file)")
