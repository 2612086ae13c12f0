"""Icons, style sheets and the default configuration shipped with smtpsvc."""
