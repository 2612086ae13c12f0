"""Postconf and main.cf: the option table, configuration, addresses and access rules."""
