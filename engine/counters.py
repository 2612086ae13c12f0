"""Performance counters of the IIS "SMTP Server" object, kept as plain integers (cheap on the hot path)."""

from __future__ import annotations

from dataclasses import dataclass, fields

# The counter names exactly as IIS shows them, keyed by attribute name.
IIS_NAMES: dict[str, str] = {
    "bytes_received_total": "Bytes Received Total",
    "bytes_sent_total": "Bytes Sent Total",
    "message_bytes_received_total": "Message Bytes Received Total",
    "message_bytes_sent_total": "Message Bytes Sent Total",
    "messages_received_total": "Messages Received Total",
    "messages_sent_total": "Messages Sent Total",
    "messages_delivered_total": "Messages Delivered Total",
    "inbound_connections_current": "Inbound Connections Current",
    "inbound_connections_total": "Inbound Connections Total",
    "outbound_connections_current": "Outbound Connections Current",
    "outbound_connections_total": "Outbound Connections Total",
    "outbound_connections_refused": "Outbound Connections Refused",
    "total_connection_errors": "Total Connection Errors",
    "inbound_connections_refused": "Inbound Connections Refused",
    "local_queue_length": "Local Queue Length",
    "remote_queue_length": "Remote Queue Length",
    "ndrs_generated": "NDRs Generated",
    "badmailed_messages_bad_pickup_file": "Badmailed Messages (Bad Pickup File)",
    "badmailed_messages_hop_count_exceeded": "Badmailed Messages (Hop Count Exceeded)",
    "badmailed_messages_general_failure": "Badmailed Messages (General Failure)",
    "directory_drops_total": "Directory Drops Total",
    "pickup_directory_messages_retrieved_total": "Pickup Directory Messages Retrieved Total",
    "messages_refused_for_size": "Messages Refused for Size",
    "messages_refused_for_relay": "Messages Refused for Relay",
    "recipients_received_total": "Recipients Received Total",
    "dns_queries_total": "DNS Queries Total",
    "message_delivery_retries": "Message Delivery Retries",
    "message_send_retries": "Message Send Retries",
    "total_dsn_failures": "Total DSN Failures",
    "badmailed_messages_ndr_of_dsn": "Badmailed Messages (NDR of DSN)",
    "badmailed_messages_no_recipients": "Badmailed Messages (No Recipients)",
    "messages_currently_undeliverable": "Messages Currently Undeliverable",
    "local_retry_queue_length": "Local Retry Queue Length",
    "remote_retry_queue_length": "Remote Retry Queue Length",
    "badmail_items_removed": "Badmail Items Removed",  # not in IIS: the badmail limits' removals
}


# The counter a Badmail item counts in, by its cause (``MessageBadmailed.cause``); exactly one each.
BADMAIL_COUNTERS: dict[str, str] = {
    "bad_pickup_file": "badmailed_messages_bad_pickup_file",
    "hop_count_exceeded": "badmailed_messages_hop_count_exceeded",
    "no_recipients": "badmailed_messages_no_recipients",
    "ndr_of_dsn": "badmailed_messages_ndr_of_dsn",
    "general_failure": "badmailed_messages_general_failure",
}


def badmail_cause(cause: str, source: str) -> str:
    """The BADMAIL_COUNTERS key of an item: its own cause, else by where it came from."""
    if cause in BADMAIL_COUNTERS:
        return cause
    return "bad_pickup_file" if source == "pickup" else "general_failure"


@dataclass
class Counters:
    bytes_received_total: int = 0
    bytes_sent_total: int = 0
    message_bytes_received_total: int = 0
    message_bytes_sent_total: int = 0
    messages_received_total: int = 0
    messages_sent_total: int = 0
    messages_delivered_total: int = 0
    inbound_connections_current: int = 0
    inbound_connections_total: int = 0
    outbound_connections_current: int = 0
    outbound_connections_total: int = 0
    outbound_connections_refused: int = 0
    total_connection_errors: int = 0
    inbound_connections_refused: int = 0
    local_queue_length: int = 0
    remote_queue_length: int = 0
    ndrs_generated: int = 0
    badmailed_messages_bad_pickup_file: int = 0
    badmailed_messages_hop_count_exceeded: int = 0
    badmailed_messages_general_failure: int = 0
    directory_drops_total: int = 0
    pickup_directory_messages_retrieved_total: int = 0
    messages_refused_for_size: int = 0
    messages_refused_for_relay: int = 0
    recipients_received_total: int = 0
    dns_queries_total: int = 0
    message_delivery_retries: int = 0
    message_send_retries: int = 0
    total_dsn_failures: int = 0
    badmailed_messages_ndr_of_dsn: int = 0
    badmailed_messages_no_recipients: int = 0
    messages_currently_undeliverable: int = 0
    local_retry_queue_length: int = 0
    remote_retry_queue_length: int = 0
    badmail_items_removed: int = 0

    def count_badmail(self, cause: str, source: str) -> None:
        name = BADMAIL_COUNTERS[badmail_cause(cause, source)]
        setattr(self, name, getattr(self, name) + 1)

    def snapshot(self) -> dict[str, float]:
        """Counter values by IIS name, plus the derived average recipients per message."""
        values: dict[str, float] = {IIS_NAMES[f.name]: getattr(self, f.name) for f in fields(self)}
        received = self.messages_received_total
        values["Avg Recipients/msg Received"] = (
            self.recipients_received_total / received if received else 0.0
        )
        return values
