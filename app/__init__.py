"""smtpsvc wiring: command line, engine host, window start-up."""
