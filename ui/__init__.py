"""smtpsvc manager window: Qt widgets and models (no sockets, no file formats)."""
