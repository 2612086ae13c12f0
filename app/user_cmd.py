"""`smtpsvc user` (the accounts of AUTH) and, with the same flags and code, `smtpsvc operator` (the Operators)."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.remote import call_sync, connecting
from engine.admin.control_ops import RequestError
from engine.admin.operators import OPERATORS_NAME, ROLES, delete_operator, operator_store, set_operator_role
from engine.conf.config import Config, default_config_path
from engine.conf.config_file import load_config, save_config, with_option
from engine.errors import ConfigError, EngineError, NotFoundError, StateError
from engine.smtpd.users import USERS_NAME, UserError, UserStore


@dataclass(frozen=True)
class Accounts:
    """One kind of account file and its command."""

    command: str  # the sub-command: "user" or "operator"
    option: str  # the server option naming the file
    file_name: str  # the file the first `add` makes beside the configuration file
    help: str
    description: str
    store: Callable[[Path], UserStore]
    roles: tuple[str, ...] = ()
    note: Callable[[Config], str] = lambda config: ""  # said after `add`

    @property
    def prog(self) -> str:
        return f"smtpsvc {self.command}"


USERS = Accounts(
    "user", "users_file", USERS_NAME, "manage the accounts of AUTH",
    "Accounts for AUTH PLAIN/LOGIN, kept as scrypt hashes in the users file (server option users_file).",
    UserStore,
    note=lambda config: "" if config.server.auth_basic else
    "note: Basic authentication is off; turn it on with `smtpsvc config set auth_basic yes`")

OPERATORS = Accounts(
    "operator", "operators_file", OPERATORS_NAME, "manage the Operators (remote administrators)",
    "Operators may administer this server over HTTPS (smtpsvc --connect, the HTML manager): role admin "
    "(everything), viewer (read-only) or poster (may only post messages: POST /post and the upload page). "
    "Kept as scrypt hashes in the operators file (server option "
    "operators_file), separate from the accounts of AUTH.",
    operator_store, ROLES,
    note=lambda config: "" if config.server.admin_listen else
    "note: the admin server is off; turn it on with `smtpsvc config set admin_listen 0.0.0.0:8443`")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], kind: Accounts = USERS) -> None:
    """Register ``<command> list|add|del|passwd`` on the main parser's sub-commands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", type=Path, default=argparse.SUPPRESS,
                        help=f"configuration file (default: {str(default_config_path()).replace('%', '%%')})")
    secret = argparse.ArgumentParser(add_help=False)
    secret.add_argument("--password-stdin", action="store_true",
                        help="read the password from the first line of standard input (no prompt)")
    parser = subparsers.add_parser(kind.command, parents=[common], help=kind.help, description=kind.description)
    parser.set_defaults(func=run, accounts=kind)
    actions = parser.add_subparsers(dest="user_action", metavar="ACTION", required=True)
    actions.add_parser("list", parents=[common], help="list the account names")
    for name, text in (("add", "add an account"), ("passwd", "change an account's password")):
        action = actions.add_parser(name, parents=[common, secret], help=text)
        action.add_argument("name", metavar="NAME")
        if name == "add" and kind.roles:
            action.add_argument("--role", choices=kind.roles, default=kind.roles[0],
                                help="what the account may do (default: %(default)s)")
    delete = actions.add_parser("del", parents=[common], help="delete an account")
    delete.add_argument("name", metavar="NAME")
    if kind.roles:
        role = actions.add_parser("role", parents=[common], help="give an account another role")
        role.add_argument("name", metavar="NAME")
        role.add_argument("role", metavar="ROLE", choices=kind.roles, help=f"one of {', '.join(kind.roles)}")


def run(args: argparse.Namespace) -> int:
    kind: Accounts = args.accounts
    prog = kind.prog
    if connecting(args):
        return _run_remote(args, kind)
    path: Path = getattr(args, "config", None) or default_config_path()
    try:
        config = load_config(path)
        store = _store(kind, config, path, creating=args.user_action == "add")
        if args.user_action == "list":
            names = store.names()
            if kind.roles:
                names = [f"{name}  ({store.role(name)})" for name in names]
            print("\n".join(names) if names else "(no accounts)")
            if store.error:
                print(f"{prog}: {store.error}", file=sys.stderr)
                return 1
        elif args.user_action == "add":
            store.add(args.name, _password(args.password_stdin), getattr(args, "role", ""))
            role = f" as {args.role}" if kind.roles else ""
            print(f"added {args.name}{role} to {store.path}")
            if note := kind.note(config):
                print(note)
        elif args.user_action == "passwd":
            store.set_password(args.name, _password(args.password_stdin))
            print(f"changed the password of {args.name}")
        elif args.user_action == "role":
            set_operator_role(store, args.name, args.role)  # never leaving no admin
            print(f"{args.name} is now {args.role}")
        else:
            (delete_operator if kind.roles else UserStore.delete)(store, args.name)  # operators: never the last admin
            print(f"deleted {args.name}")
    except ConfigError as error:
        print(f"{prog}: " + "\n  ".join(f"{key}: {why}" for key, why in error.problems), file=sys.stderr)
        return 2
    except (UserError, StateError) as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, EOFError):
        print(f"\n{prog}: cancelled", file=sys.stderr)
        return 1
    return 0


def _run_remote(args: argparse.Namespace, kind: Accounts) -> int:
    """`smtpsvc --connect URL user|operator ...`: the same actions through the engine at URL (users.* or
    operators.* ops), on the accounts file that engine is configured with."""
    prog, ops = kind.prog, "operators" if kind.roles else "users"
    try:
        if args.user_action == "list":
            found = call_sync(args, f"{ops}.list")
            names = [f"{o['name']}  ({o['role']})" for o in found] if kind.roles else [str(n) for n in found]
            print("\n".join(names) if names else "(no accounts)")
        elif args.user_action == "add":
            password = _password(args.password_stdin)
            role = {"role": args.role} if kind.roles else {}
            call_sync(args, f"{ops}.add", {"name": args.name, "password": password, **role})
            print(f"added {args.name}{' as ' + args.role if kind.roles else ''} at {args.connect}")
        elif args.user_action == "passwd":
            password = _password(args.password_stdin)
            call_sync(args, f"{ops}.passwd", {"name": args.name, "password": password})
            print(f"changed the password of {args.name} at {args.connect}")
        elif args.user_action == "role":
            call_sync(args, f"{ops}.role", {"name": args.name, "role": args.role})
            print(f"{args.name} is now {args.role} at {args.connect}")
        else:
            call_sync(args, f"{ops}.delete", {"name": args.name})
            print(f"deleted {args.name} at {args.connect}")
    except (UserError, NotFoundError, RequestError, StateError) as error:  # refused: the name, the password…
        print(f"{prog}: {error}", file=sys.stderr)
        return 2
    except EngineError as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, EOFError) as error:
        print(f"\n{prog}: {error or 'cancelled'}", file=sys.stderr)
        return 1
    return 0


def _store(kind: Accounts, config: Config, path: Path, *, creating: bool) -> UserStore:
    """The configured file; the first ``add`` puts one beside the configuration file and names it there."""
    configured = getattr(config.server, kind.option)
    if configured:
        return kind.store(Path(configured))
    if not creating:
        raise UserError(f"no {kind.command}s file is configured (server option {kind.option}); "
                        f"`{kind.prog} add` makes one")
    accounts = path.expanduser().resolve().parent / kind.file_name
    save_config(path, with_option(config, kind.option, str(accounts)))
    print(f"{kind.command}s file: {accounts} (now named in {path})")
    return kind.store(accounts)


def _password(from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != first:
        raise UserError("the passwords do not match")
    return first
