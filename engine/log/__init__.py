"""Logs of the service: the IIS protocol log (W3C / NCSA / IIS formats) and the persistent event log."""
