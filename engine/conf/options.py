"""The option table ("metabase"): every server setting with type, default, IIS name and description.

Validation, the TOML file, ``smtpsvc config`` and the property sheets all derive from this table.
Invariant: every field of ``config.ServerConfig`` has exactly one row here, and vice versa.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

OptionType = Literal["str", "int", "bool", "str_list", "int_list", "choice"]


@dataclass(frozen=True)
class Option:
    name: str  # field name in ServerConfig and key in the TOML [server] table
    type: OptionType
    default: object
    iis_name: str  # the metabase / property-sheet name in IIS
    description: str
    tab: str  # property-sheet tab: General, Access, Messages, Delivery, Security, Protocol
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()
    unit: str = ""
    min_items: int = 0  # lists only: fewest entries allowed
    max_items: int | None = None  # lists only: most entries allowed; None = no limit
    secret: bool = False  # shown masked, never printed by `smtpsvc config show`
    local: bool = False  # specific to this computer (addresses, paths, certificates): never replicated


# The W3C Extended fields IIS offers, in its order; the default leaves out the HTTP-only ones.
W3C_LOG_FIELDS: tuple[str, ...] = (
    "date", "time", "c-ip", "cs-username", "s-sitename", "s-computername", "s-ip", "s-port", "cs-method",
    "cs-uri-stem", "cs-uri-query", "sc-status", "sc-win32-status", "sc-bytes", "cs-bytes", "time-taken",
    "cs-version", "cs-host", "cs(User-Agent)", "cs(Cookie)", "cs(Referer)",
)
W3C_LOG_FIELDS_DEFAULT: tuple[str, ...] = W3C_LOG_FIELDS[:18]

OPTIONS: tuple[Option, ...] = (
    # General
    Option("listen", "str_list", ("127.0.0.1:2525",), "ServerBindings",
           "Addresses to listen on as HOST:PORT ([v6]:PORT for IPv6). IIS listens on all unassigned "
           "addresses, port 25; the desktop default is loopback only, unprivileged.", "General",
           min_items=1, local=True),
    Option("fqdn", "str", "", "FullyQualifiedDomainName",
           "Name used in the banner, EHLO and Received headers; empty = this computer's FQDN.", "General", local=True),
    Option("max_connections", "int", 0, "MaxConnections",
           "Limit number of inbound connections; 0 = off (IIS 5/6 default), which still stops at three quarters "
           "of the process's open-file limit so that accepting never fails for everyone.", "General",
           minimum=0, maximum=1_000_000),
    Option("connection_timeout", "int", 600, "ConnectionTimeout",
           "Seconds an idle inbound connection is kept.", "General", minimum=1, maximum=86_400, unit="s"),
    Option("max_connections_per_peer", "int", 0, "",
           "Limit of simultaneous connections from one client address; 0 = none of its own (half the automatic "
           "limit when the connection limit is off too). Not in IIS.",
           "General", minimum=0, maximum=1_000_000),
    # Messages
    Option("max_message_size_kb", "int", 2048, "MaxMessageSize",
           "Limit message size in KB, advertised in EHLO SIZE; 0 = no limit.", "Messages",
           minimum=0, maximum=4_194_304, unit="KB"),
    Option("max_session_size_kb", "int", 10240, "MaxSessionSize",
           "Limit of all message data in one session, in KB; 0 = no limit.", "Messages",
           minimum=0, maximum=16_777_216, unit="KB"),
    Option("max_messages_per_connection", "int", 20, "MaxBatchedMessages",
           "Outbound: messages sent over one connection before a new one is opened.", "Messages",
           minimum=1, maximum=100_000),
    Option("max_recipients", "int", 100, "MaxRecipients",
           "Recipients accepted per message (inbound: 452 beyond it; outbound: split, never bounced).",
           "Messages", minimum=1, maximum=100_000),
    Option("ndr_copy_to", "str", "", "SendNdrTo", "Send a copy of every NDR to this address.", "Messages"),
    Option("badmail_dir", "str", "", "BadMailDirectory",
           "Badmail directory; empty = Mailroot/Badmail.", "Messages", local=True),
    Option("badmail_max_size_mb", "int", 0, "",
           "Limit of the Badmail directory in MB: beyond it the oldest items are removed (counted, and an "
           "event says so); 0 = no limit (IIS: Badmail grows until an administrator empties it).", "Messages",
           minimum=0, maximum=1_048_576, unit="MB"),
    Option("badmail_max_age_days", "int", 0, "",
           "Badmail items older than this many days are removed, oldest first (counted, and an event says so); "
           "0 = kept until removed by hand, as in IIS.", "Messages", minimum=0, maximum=36_500, unit="days"),
    # Delivery
    Option("retry_intervals_min", "int_list", (15, 30, 60, 240), "SmtpRemoteProgressiveRetry",
           "Outbound retry intervals in minutes: first, second, third, subsequent.", "Delivery",
           minimum=1, maximum=100_000, unit="min", min_items=1, max_items=4),
    Option("delay_notification_min", "int", 720, "SmtpRemoteDelayExpireMinutes",
           "Remote delivery: minutes before a delay notice goes to the sender.", "Delivery",
           minimum=1, maximum=1_000_000, unit="min"),
    Option("expiration_min", "int", 2880, "SmtpRemoteNDRExpireMinutes",
           "Remote delivery: minutes before an undeliverable message is returned with an NDR.",
           "Delivery", minimum=1, maximum=1_000_000, unit="min"),
    Option("local_delay_notification_min", "int", 720, "SmtpLocalDelayExpireMinutes",
           "Local delivery: minutes before a delay notice.", "Delivery",
           minimum=1, maximum=1_000_000, unit="min"),
    Option("local_expiration_min", "int", 2880, "SmtpLocalNDRExpireMinutes",
           "Local delivery: minutes before an NDR.", "Delivery", minimum=1, maximum=1_000_000, unit="min"),
    Option("max_outbound_connections", "int", 1000, "MaxOutConnections",
           "Limit of outbound connections.", "Delivery", minimum=1, maximum=100_000),
    Option("max_outbound_per_domain", "int", 100, "MaxOutConnectionsPerDomain",
           "Limit of outbound connections per remote domain.", "Delivery", minimum=1, maximum=100_000),
    Option("outbound_timeout", "int", 600, "RemoteTimeout",
           "Seconds before an idle outbound connection is dropped.", "Delivery",
           minimum=1, maximum=86_400, unit="s"),
    Option("outbound_port", "int", 25, "RemoteSmtpPort", "TCP port of outbound connections.", "Delivery",
           minimum=1, maximum=65_535),
    Option("outbound_tls", "bool", False, "RemoteSecurePort",
           "Outbound Security: require TLS encryption on every outbound connection (opportunistic STARTTLS "
           "is always tried). Without TLS the message waits and is returned at expiry.", "Delivery"),
    Option("outbound_user", "str", "", "RouteUserName",
           "Outbound Security, basic authentication: the account used with AUTH at the next hop (usually the "
           "smart host); empty = anonymous. (IIS metabase name unconfirmed.)", "Delivery"),
    Option("outbound_password", "str", "", "RoutePassword",
           "Outbound Security, basic authentication: the password for that account. Stored in the configuration "
           "file (mode 0600).", "Delivery", secret=True),
    Option("outbound_tls_verify", "choice", "required", "",
           "Outbound Security: check the next hop's certificate and name. 'required' = when TLS is required "
           "(this sheet or the remote domain; a bad certificate then defers the message), 'never' = no check. "
           "Opportunistic STARTTLS is never checked (RFC 7435).", "Delivery", choices=("required", "never")),
    Option("outbound_tls_ca_file", "str", "", "",
           "Outbound Security: PEM file of the certificate authorities trusted when certificates are checked; "
           "empty = the system's store.", "Delivery", local=True),
    Option("max_hop_count", "int", 15, "HopCount",
           "Messages with more Received headers than this are refused (loop detection).", "Delivery",
           minimum=1, maximum=256),
    Option("masquerade_domain", "str", "", "MasqueradeDomain",
           "Replaces the local domain in MAIL FROM on the first hop; empty = off.", "Delivery"),
    Option("smart_host", "str", "", "SmartHost",
           "Send all remote mail through this host ([1.2.3.4] skips DNS); empty = MX routing.", "Delivery"),
    Option("attempt_direct_before_smart_host", "bool", False, "SmartHostType",
           "Attempt direct delivery before sending to the smart host.", "Delivery"),
    Option("reverse_dns_lookup", "bool", False, "EnableReverseDnsLookup",
           "Look up the client's name; Received says 'unverified' when it fails.", "Delivery"),
    Option("dns_servers", "str_list", (), "DnsServers",
           "External DNS servers as HOST[:PORT]; empty = the system resolver.", "Delivery"),
    # Access
    Option("relay_mode", "choice", "only_listed", "RelayIpList",
           "Relay restrictions: 'only_listed' = only the computers in the list below may relay (IIS default; "
           "with an empty list nobody); 'all_except_listed' = every computer except the list below.", "Access",
           choices=("only_listed", "all_except_listed")),
    Option("relay_allowed", "str_list", (), "RelayIpList",
           "Relay restrictions list: IP addresses, networks (10.0.0.0/8, 2001:db8::/32) and domain names "
           "(host.example, *.example: the client's reverse DNS name, forward-confirmed; when that lookup "
           "fails for now the recipient gets 451 4.7.1). Empty by default. Mail for the local domains and "
           "remote domains that allow relay is accepted from everyone.", "Access"),
    Option("authenticated_may_relay", "bool", True, "RelayForAuth",
           "Allow all computers which successfully authenticate to relay.", "Access"),
    Option("auth_anonymous", "bool", True, "AuthAnonymous",
           "Anonymous access: clients may send mail without authenticating. Off: MAIL needs AUTH first "
           "(530 5.7.0).", "Access"),
    Option("auth_basic", "bool", False, "AuthBasic",
           "Basic authentication: offer AUTH PLAIN and LOGIN with the accounts of the users file.", "Access"),
    Option("auth_plaintext_allowed", "bool", False, "",
           "Basic authentication without TLS: also offer AUTH before STARTTLS (passwords in clear text; an "
           "event warns). IIS: the 'Requires TLS encryption' box unchecked.", "Access"),
    Option("auth_default_domain", "str", "", "DefaultLogonDomain",
           "Default domain: a login without '@' is also looked up as login@domain.", "Access"),
    Option("users_file", "str", "", "",
           "The users file of Basic authentication (scrypt hashes, mode 0600), managed with `smtpsvc user`; "
           "empty = no accounts. An absolute path.", "Access", local=True),
    Option("auth_lockout_failures", "int", 5, "",
           "Failed logins from one address (IPv6: one /64) before it is locked out; 0 = never.", "Access",
           minimum=0, maximum=1_000),
    Option("auth_lockout_seconds", "int", 900, "",
           "How long a lock-out lasts, and how long a failed login is remembered.", "Access",
           minimum=1, maximum=604_800, unit="s"),
    Option("auth_failure_delay_ms", "int", 1000, "",
           "Delay before a 535 reply; it doubles with each failure from the same address (at most 16 times).",
           "Access", minimum=0, maximum=60_000, unit="ms"),
    Option("tls_certificate", "str", "", "SSLCertHash",
           "Certificate: PEM file of the server certificate (and its chain) for STARTTLS; empty = no TLS. "
           "`smtpsvc cert new` makes a self-signed one. Replacing the file takes effect at the next "
           "connection. An absolute path.", "Access", local=True),
    Option("tls_key", "str", "", "",
           "Certificate: PEM file of the private key; empty = the key is in the certificate file. An absolute "
           "path.", "Access", local=True),
    Option("require_tls", "bool", False, "AccessSSL",
           "Require TLS encryption: every command but EHLO, NOOP, STARTTLS and QUIT is refused before "
           "STARTTLS (530 5.7.0). Without a usable certificate no mail is accepted.", "Access"),
    Option("tls_listen", "str_list", (), "",
           "Addresses (HOST:PORT) of implicit-TLS listeners (SMTPS, port 465 style): TLS from the first byte. "
           "Needs a certificate.", "Access", local=True),
    Option("connection_grant", "choice", "all_except_listed", "IPSecurity",
           "Connection control: 'all_except_listed' = every computer except the list below may connect; "
           "'only_listed' = only the list below.", "Access", choices=("all_except_listed", "only_listed")),
    Option("connection_list", "str_list", (), "IPSecurity",
           "Connection control list: IP addresses, networks (10.0.0.0/8, 10.0.0.0/255.0.0.0, 2001:db8::/32) "
           "and domain names (host.example, *.example: the client's reverse DNS name, forward-confirmed). "
           "Refused clients get 554 5.7.1 at connect.", "Access"),
    # Security: remote administration (the admin server, its operators)
    Option("admin_listen", "str", "", "",
           "Remote administration: address (HOST:PORT, e.g. 0.0.0.0:8443) of the admin server — the HTML manager, "
           "the JSON API of `smtpsvc --connect` and the Posting Acceptor, over HTTPS; empty = off. A change applies "
           "at once: the new address is bound before the old one is let go, and a change that cannot be bound is "
           "refused with the old address kept.", "Security",
           local=True),
    Option("admin_tls_certificate", "str", "", "",
           "Remote administration: PEM certificate of the admin server; empty = the SMTP certificate "
           "(tls_certificate, made by `smtpsvc cert new`). An absolute path. A changed setting applies at once "
           "(refused when the certificate cannot be used); a file replaced under the same name is read when an "
           "admin setting changes or at the next start.", "Security", local=True),
    Option("admin_tls_key", "str", "", "",
           "Remote administration: PEM private key of that certificate; empty = tls_key, or in the certificate "
           "file. An absolute path. Applies with the certificate, at once.", "Security", local=True),
    Option("admin_allow_plain_loopback", "bool", False, "",
           "Remote administration: allow plain HTTP when the admin server listens on a loopback address and no "
           "certificate is configured (never on any other address).", "Security", local=True),
    Option("operators_file", "str", "", "",
           "The Operators: accounts allowed to administer this server remotely (admin, viewer, or poster: may "
           "only post messages), as scrypt hashes in their own file (mode 0600), managed with `smtpsvc operator`. "
           "An absolute path.", "Security", local=True),
    # Protocol (not on an IIS sheet; hardening knobs)
    Option("max_bad_commands", "int", 10, "",
           "Bad or unknown commands in a session before 421 and disconnect (unconfirmed IIS value).",
           "Protocol", minimum=1, maximum=10_000),
    Option("max_command_line", "int", 2048, "",
           "Longest accepted command line in bytes (RFC 5321 minimum 512); longer: 500 5.5.2.",
           "Protocol", minimum=512, maximum=65_536),
    Option("bare_newline", "choice", "reject", "",
           "Bare LF or CR inside DATA: 'reject' the message (550 5.6.0) or 'normalize' it to CRLF. "
           "Either way only CRLF.CRLF ends DATA (SMTP smuggling).", "Protocol",
           choices=("reject", "normalize")),
    # General: Logging (IIS "Enable logging" and its Properties… dialog)
    Option("log_enabled", "bool", True, "LogType",
           "Enable logging: one protocol-log line per SMTP command, inbound and outbound. IIS shipped it off; "
           "on here because message tracking and troubleshooting need it.", "General"),
    Option("log_format", "choice", "w3c", "LogPluginClsid",
           "Active log format: 'w3c' = W3C Extended (exYYMMDD.log), 'ncsa' = NCSA Common (ncYYMMDD.log), "
           "'iis' = Microsoft IIS (inYYMMDD.log).", "General", choices=("w3c", "ncsa", "iis")),
    Option("log_dir", "str", "", "LogFileDirectory",
           "Log file directory; empty = a Logs folder beside the configuration file. The files go in its "
           "SMTPSVC1 folder. A relative path is relative to the configuration file's folder.", "General",
           local=True),
    Option("log_period", "choice", "daily", "LogFilePeriod",
           "New log schedule: hourly, daily, weekly, monthly, 'size' (a new file when it reaches the size "
           "below: extend1.log, extend2.log…) or 'unlimited' (one file).", "General",
           choices=("hourly", "daily", "weekly", "monthly", "size", "unlimited")),
    Option("log_max_size_mb", "int", 20, "LogFileTruncateSize",
           "With the 'size' schedule: start a new file when the current one reaches this size.", "General",
           minimum=1, maximum=4096, unit="MB"),
    Option("log_fields", "str_list", W3C_LOG_FIELDS_DEFAULT, "LogExtFileFlags",
           "W3C Extended fields written, in this order (unconfirmed IIS 6 SMTP default: every field with a "
           "meaning for SMTP).", "General", choices=W3C_LOG_FIELDS, min_items=1),
    Option("log_local_time", "bool", False, "LogFileLocalTimeRollover",
           "Use local time for file naming and rollover (UTC otherwise). W3C lines are always in UTC.",
           "General"),
    Option("allow_verify", "bool", True, "AllowVerify",
           "Answer VRFY (252 2.1.5: the address is not confirmed, the message would be accepted). Off: "
           "502 5.5.1, VRFY is disabled (it is not offered in HELP either).", "Protocol"),
    Option("metrics_listen", "str", "", "",
           "Address (HOST:PORT, e.g. 127.0.0.1:9125) where /metrics serves every performance counter in the "
           "Prometheus text format; empty = off. Not in IIS.", "General", local=True),
)

OPTIONS_BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}

DOMAIN_TYPES: tuple[str, ...] = ("default", "alias", "remote")
DOMAIN_TYPE_LABELS: dict[str, str] = {
    "default": "Local (Default)",
    "alias": "Local (Alias)",
    "remote": "Remote",
}
