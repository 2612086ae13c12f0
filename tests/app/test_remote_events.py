"""Events from another computer's event stream become the engine's events again (app.remote_host)."""

from __future__ import annotations

import json

from app.remote_host import event_from_json
from engine.admin.http_server import event_json
from engine.events import MessageQueued


def test_message_queued_round_trips_with_its_header_fields() -> None:
    event = MessageQueued("Q1", "a@b.test", ("c@d.test",), 10, "smtp", "id@x", "Grüße", "from x",
                          scanned=True, at=5.0)
    assert event_from_json(json.loads(json.dumps(event_json(event)))) == event
    older = {"type": "MessageQueued", "at": 5.0, "queue_id": "Q1", "sender": "a@b.test", "recipients": ["c@d.test"],
             "size": 10, "source": "smtp"}  # an engine from before the fields: tracking reads the file
    assert event_from_json(older) == MessageQueued("Q1", "a@b.test", ("c@d.test",), 10, "smtp", at=5.0)
