"""`smtpsvc config`: show, get and set options and manage the domains in the configuration file."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from app.remote import connecting, remote_call
from app.running import running_mailroot
from engine.admin.control import ControlUnavailableError, request, socket_path
from engine.admin.control_ops import RequestError
from engine.conf.config import (
    DOMAIN_SECRETS,
    OUTBOUND_AUTH,
    Config,
    DomainConfig,
    add_domain,
    default_config_path,
    delete_domain,
    find_domain,
    set_default_domain,
    update_domain,
    with_domain_settings,
)
from engine.conf.config_file import (
    config_from_dict,
    domain_to_dict,
    format_value,
    load_config,
    parse_value,
    resolve_key,
    save_config,
    with_option,
)
from engine.conf.options import DOMAIN_TYPE_LABELS, OPTIONS, OPTIONS_BY_NAME
from engine.errors import ConfigError, DomainError, EngineError, NotFoundError
from engine.store.mailroot import Mailroot, default_mailroot

PROG = "smtpsvc config"
EXIT_USAGE = 2  # a bad key, value or domain operation: the file is left as it was
EXIT_FAILED = 1  # the file could not be read, is broken, or could not be written

_TOP_KEYS = {
    "name": "Name of the virtual server, shown in the manager's tree.",
    "mailroot": f"The Mailroot directory; empty = {default_mailroot()}.",
}


class _Failed(Exception):
    """A failure already worded for the user, with its exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``config`` (with its actions) on the main parser's sub-commands."""
    # SUPPRESS: a --config given before the action (or by the main parser) is not overwritten by a default.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", type=Path, default=argparse.SUPPRESS,
                        help=f"configuration file (default: {str(default_config_path()).replace('%', '%%')})")
    parser = subparsers.add_parser("config", parents=[common], help="show or change the configuration",
                                   description="Show or change the configuration file (like postconf).")
    parser.set_defaults(func=run)
    actions = parser.add_subparsers(dest="config_action", metavar="ACTION", required=True)

    show = actions.add_parser("show", parents=[common], help="print every option as 'key = value'")
    show.add_argument("-n", dest="non_default", action="store_true", help="only values not at their default")
    show.add_argument("-v", dest="verbose", action="store_true", help="add the IIS name and description")
    get = actions.add_parser("get", parents=[common], help="print the value of KEY")
    get.add_argument("key", metavar="KEY")
    set_ = actions.add_parser("set", parents=[common], help="set KEY to VALUE (lists comma separated)")
    set_.add_argument("key", metavar="KEY")
    set_.add_argument("value", metavar="VALUE")

    domain = actions.add_parser("domain", parents=[common], help="list, add, delete domains; set the default")
    domain_actions = domain.add_subparsers(dest="domain_action", metavar="ACTION", required=True)
    domain_actions.add_parser("list", parents=[common], help="list the domains")
    add = domain_actions.add_parser("add", parents=[common], help="add a local alias or a remote domain")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--type", choices=("alias", "remote"), required=True)
    add.add_argument("--relay", action="store_true", help="remote: allow incoming mail to be relayed to it")
    add.add_argument("--smart-host", metavar="HOST", default="", help="remote: forward all mail to HOST")
    add.add_argument("--tls-required", action="store_true", help="remote: outbound TLS required")
    add.add_argument("--use-helo", action="store_true", help="remote: send HELO instead of EHLO")
    add.add_argument("--etrn", action="store_true", help="remote: queue for remote triggered delivery")
    add.add_argument("--drop-dir", metavar="DIR", default="",
                     help="alias: its own Drop directory (relative = inside the Mailroot; "
                          "default: the default domain's Drop)")
    set_domain = domain_actions.add_parser("set", parents=[common], help="change a domain's settings")
    set_domain.add_argument("name", metavar="NAME")
    set_domain.add_argument("--drop-dir", metavar="DIR", default=None,
                            help="local domains: the Drop directory (relative = inside the Mailroot; "
                                 "'' = the default domain's Drop, or Mailroot/Drop for the default domain)")
    set_domain.add_argument("--tls-required", choices=("yes", "no"), default=None,
                            help="remote: require TLS for outbound mail to this domain")
    set_domain.add_argument("--outbound-auth", choices=OUTBOUND_AUTH, default=None,
                            help="remote: Outbound Security — as the server, anonymous, or basic (--outbound-user)")
    set_domain.add_argument("--outbound-user", metavar="USER", default=None, help="remote, basic: the account")
    set_domain.add_argument("--outbound-password-stdin", action="store_true",
                            help="remote, basic: read the password from the first line of standard input "
                                 "(never on the command line)")
    delete = domain_actions.add_parser("delete", parents=[common], help="delete a domain (not the default)")
    delete.add_argument("name", metavar="NAME")
    default = domain_actions.add_parser("set-default", parents=[common],
                                        help="make a local alias the default domain")
    default.add_argument("name", metavar="NAME")


def run(args: argparse.Namespace) -> int:
    if connecting(args):
        return _run_remote(args)
    path: Path = getattr(args, "config", None) or default_config_path()
    try:
        if args.config_action == "show":
            _show(_load(path), non_default=args.non_default, verbose=args.verbose)
        elif args.config_action == "get":
            print(_get(_load(path), args.key))
        elif args.config_action == "set":
            current = _load(path)
            _save(path, _set(current, args.key, args.value), current, args, resolve_key(args.key))
        elif args.domain_action == "list":
            _list_domains(_load(path))
        else:
            current = _load(path)
            _save(path, _change_domains(current, args), current, args)
    except _Failed as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.code
    except (ConfigError, DomainError) as exc:
        print(f"{PROG}: {_describe(exc)}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def _run_remote(args: argparse.Namespace) -> int:
    """The same actions on the engine of another computer (--connect), which validates and saves them."""
    try:
        asyncio.run(_remote(args))
    except _Failed as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.code
    except (ConfigError, DomainError) as exc:
        print(f"{PROG}: {_describe(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except EngineError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, RequestError | NotFoundError) else EXIT_FAILED
    except (KeyboardInterrupt, EOFError) as exc:
        print(f"{PROG}: {exc or 'cancelled'}", file=sys.stderr)
        return EXIT_FAILED
    return 0


async def _remote(args: argparse.Namespace) -> None:
    async with remote_call(args) as invoke:
        await _engine_ops(args, invoke)
    changed = args.config_action == "set" or getattr(args, "domain_action", "list") != "list"
    if changed and args.config_action == "set" and resolve_key(args.key) in RESTART_KEYS:
        print(f"Saved; {resolve_key(args.key)} takes effect when the engine at {args.connect} is restarted.")
    elif changed:
        print(f"Saved and applied to the engine at {args.connect}.")


async def _engine_ops(args: argparse.Namespace, invoke: Callable[[str, dict[str, Any]], Awaitable[Any]]) -> None:
    """The command as ops of a running engine, which validates, applies and saves."""
    action = args.config_action
    if action == "set":
        await invoke("config.set", {"key": args.key, "value": args.value})
    elif action == "domain" and args.domain_action == "add":
        await invoke("domain.add", {"name": args.name, "type": args.type, "relay": args.relay,
                                    "smart_host": args.smart_host, "tls_required": args.tls_required,
                                    "use_helo": args.use_helo, "etrn": args.etrn, "drop_dir": args.drop_dir})
    elif action == "domain" and args.domain_action == "set":
        await invoke("domain.set", {"name": args.name, **_domain_settings(args)})
    elif action == "domain" and args.domain_action in ("delete", "set-default"):
        op = "domain.delete" if args.domain_action == "delete" else "domain.set_default"
        await invoke(op, {"name": args.name})
    else:
        config = config_from_dict(await invoke("config.get", {}))
        if action == "show":
            _show(config, non_default=args.non_default, verbose=args.verbose)
        elif action == "get":
            print(_get(config, args.key))
        else:
            _list_domains(config)


def _domain_settings(args: argparse.Namespace) -> dict[str, Any]:
    """`domain set`'s flags as domain.set's arguments (those given only); the password is read from standard
    input once, however many times the command runs (the running engine's change, then the file's)."""
    if getattr(args, "domain_settings", None) is None:
        settings: dict[str, Any] = {"drop_dir": args.drop_dir, "outbound_auth": args.outbound_auth,
                                    "outbound_user": args.outbound_user}
        if args.tls_required is not None:
            settings["tls_required"] = args.tls_required == "yes"
        if args.outbound_password_stdin:
            settings["outbound_password"] = sys.stdin.readline().rstrip("\r\n")
        args.domain_settings = {key: value for key, value in settings.items() if value is not None}
    if not args.domain_settings:
        raise _Failed("nothing to change: give --drop-dir, --tls-required, --outbound-auth, --outbound-user "
                      "or --outbound-password-stdin", EXIT_USAGE)
    return dict(args.domain_settings)


def _describe(exc: ConfigError | DomainError) -> str:
    if isinstance(exc, DomainError):
        return str(exc)
    return "\n  ".join(f"{key}: {why}" for key, why in exc.problems)


def _load(path: Path) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:  # keys are the file itself (unreadable, not TOML) or a setting in it
        lines = [f"{path}: {why}" if key == str(path) else f"{path}: {key}: {why}"
                 for key, why in exc.problems]
        raise _Failed("\n  ".join(lines), EXIT_FAILED) from None


def _save(path: Path, config: Config, old: Config, args: argparse.Namespace, key: str = "") -> None:
    """Save the file; an engine running on this Mailroot is given the same change first, through its control
    socket, and applies it at once (nothing is saved if it refuses): `config set` changes the running engine."""
    # The engine serving this file may run on another Mailroot than the file names (`serve --mailroot`).
    control = socket_path(running_mailroot(path) or Mailroot.from_config(old).root)
    try:
        applied = asyncio.run(_apply_running(control, path, args))
    except (ConfigError, DomainError):
        raise
    except EngineError as exc:
        raise _Failed(f"the running engine refused the change, nothing was saved: {exc}", EXIT_FAILED) from None
    try:
        save_config(path, config)
    except OSError as exc:
        raise _Failed(f"cannot write {path}: {exc.strerror or exc}", EXIT_FAILED) from None
    if applied and key in RESTART_KEYS:
        print(f"Saved; {key} takes effect when the running engine is restarted.")
    elif applied:
        print("Saved and applied to the running engine.")


RESTART_KEYS = ("mailroot",)  # read once at start; OPTIONS apply live (tests/engine/test_options_live.py)


async def _apply_running(control: Path, path: Path, args: argparse.Namespace) -> bool:
    """Run the command on the engine answering on ``control`` when it serves the file ``path``; False when no
    engine runs there, or the one there serves another file (a change to this file is not its business)."""
    async def invoke(op: str, op_args: dict[str, Any]) -> Any:
        return await request(control, op, **op_args)

    try:
        state = await request(control, "state")
    except ControlUnavailableError:
        return False
    served = state.get("config_file") if isinstance(state, dict) else None
    if served is None or Path(served) != path.expanduser().resolve():
        return False
    await _engine_ops(args, invoke)
    return True


def _get(config: Config, key: str) -> str:
    name = resolve_key(key)
    if name in _TOP_KEYS:
        return str(getattr(config, name))
    return format_value(OPTIONS_BY_NAME[name], getattr(config.server, name))


def _set(config: Config, key: str, text: str) -> Config:
    name = resolve_key(key)
    value = text if name in _TOP_KEYS else parse_value(OPTIONS_BY_NAME[name], text)
    return with_option(config, name, value)


def _show(config: Config, *, non_default: bool, verbose: bool) -> None:
    defaults = Config()
    lines: list[str] = []
    for key, description in _TOP_KEYS.items():
        value = getattr(config, key)
        if not non_default or value != getattr(defaults, key):
            lines += [f"# {description}"] if verbose else []
            lines.append(f"{key} = {value}")
    for option in OPTIONS:
        value = getattr(config.server, option.name)
        if not non_default or value != option.default:
            if verbose:
                lines.append(f"# {option.iis_name or '(not in IIS)'}: {option.description}")
            shown = "********" if option.secret and value else format_value(option, value)
            lines.append(f"{option.name} = {shown}")
    for domain in config.effective_domains:
        implicit = domain not in config.domains
        if not (non_default and implicit):
            lines.append(f"domain[{domain.name}] = {_domain_summary(domain, implicit)}")
    print("\n".join(lines))


def _domain_summary(domain: DomainConfig, implicit: bool = False) -> str:
    details = [f"{key}={'********' if key in DOMAIN_SECRETS else value}"
               for key, value in domain_to_dict(domain).items()
               if key not in ("name", "type") and value != getattr(DomainConfig("", ""), key)]
    if implicit:
        details.append("implicit: the server's FQDN")
    return ", ".join([DOMAIN_TYPE_LABELS.get(domain.type, domain.type), *details])


def _list_domains(config: Config) -> None:
    domains = config.effective_domains
    width = max(len("Domain Name"), *(len(d.name) for d in domains))
    print(f"{'Domain Name':<{width}}  Type")
    for domain in domains:
        print(f"{domain.name:<{width}}  {_domain_summary(domain, domain not in config.domains)}")


def _change_domains(config: Config, args: argparse.Namespace) -> Config:
    if args.domain_action == "add":
        domain = DomainConfig(name=args.name, type=args.type, relay_allowed=args.relay,
                              route="smarthost" if args.smart_host else "dns", smart_host=args.smart_host,
                              tls_required=args.tls_required, use_helo=args.use_helo, etrn_queue=args.etrn,
                              drop_dir=args.drop_dir)
        return add_domain(config, domain)
    if args.domain_action == "set":
        return update_domain(config, with_domain_settings(find_domain(config, args.name), **_domain_settings(args)))
    if args.domain_action == "delete":
        return delete_domain(config, args.name)
    return set_default_domain(config, args.name)
