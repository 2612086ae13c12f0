"""Cleanup: a received message checked, stamped and committed into Drop or Queue."""
