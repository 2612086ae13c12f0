"""Smtpd, anvil and tlsmgr: the inbound SMTP session, its limits, TLS and authentication."""
