"""The smtp client: outbound connections and next-hop resolution."""
