"""`smtpsvc user`: the accounts of Basic authentication (AUTH PLAIN/LOGIN) in the users file."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from engine.conf.config import Config, default_config_path
from engine.conf.config_file import load_config, save_config, with_option
from engine.errors import ConfigError
from engine.smtpd.users import UserError, UserStore

PROG = "smtpsvc user"
USERS_NAME = "smtpsvc-users"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``user list|add|del|passwd`` on the main parser's sub-commands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", type=Path, default=argparse.SUPPRESS,
                        help=f"configuration file (default: {str(default_config_path()).replace('%', '%%')})")
    secret = argparse.ArgumentParser(add_help=False)
    secret.add_argument("--password-stdin", action="store_true",
                        help="read the password from the first line of standard input (no prompt)")
    parser = subparsers.add_parser("user", parents=[common], help="manage the accounts of AUTH",
                                   description="Accounts for AUTH PLAIN/LOGIN, kept as scrypt hashes in the "
                                   "users file (server option users_file).")
    parser.set_defaults(func=run)
    actions = parser.add_subparsers(dest="user_action", metavar="ACTION", required=True)
    actions.add_parser("list", parents=[common], help="list the account names")
    for name, text in (("add", "add an account"), ("passwd", "change an account's password")):
        action = actions.add_parser(name, parents=[common, secret], help=text)
        action.add_argument("name", metavar="NAME")
    delete = actions.add_parser("del", parents=[common], help="delete an account")
    delete.add_argument("name", metavar="NAME")


def run(args: argparse.Namespace) -> int:
    path: Path = getattr(args, "config", None) or default_config_path()
    try:
        config = load_config(path)
        store = _store(config, path, creating=args.user_action == "add")
        if args.user_action == "list":
            names = store.names()
            print("\n".join(names) if names else "(no accounts)")
            if store.error:
                print(f"{PROG}: {store.error}", file=sys.stderr)
                return 1
        elif args.user_action == "add":
            store.add(args.name, _password(args.password_stdin))
            print(f"added {args.name} to {store.path}")
            if not config.server.auth_basic:
                print("note: Basic authentication is off; turn it on with `smtpsvc config set auth_basic yes`")
        elif args.user_action == "passwd":
            store.set_password(args.name, _password(args.password_stdin))
            print(f"changed the password of {args.name}")
        else:
            store.delete(args.name)
            print(f"deleted {args.name}")
    except ConfigError as error:
        print(f"{PROG}: " + "\n  ".join(f"{key}: {why}" for key, why in error.problems), file=sys.stderr)
        return 2
    except UserError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, EOFError):
        print(f"\n{PROG}: cancelled", file=sys.stderr)
        return 1
    return 0


def _store(config: Config, path: Path, *, creating: bool) -> UserStore:
    """The configured users file; the first ``add`` puts one beside the configuration file and names it there."""
    if config.server.users_file:
        return UserStore(Path(config.server.users_file))
    if not creating:
        raise UserError("no users file is configured (server option users_file); `smtpsvc user add` makes one")
    users = path.expanduser().resolve().parent / USERS_NAME
    save_config(path, with_option(config, "users_file", str(users)))
    print(f"users file: {users} (now named in {path})")
    return UserStore(users)


def _password(from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != first:
        raise UserError("the passwords do not match")
    return first
