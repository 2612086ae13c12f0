"""Pickup: files dropped into the Pickup directory, read and handed to cleanup."""
