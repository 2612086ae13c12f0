"""Qmgr and local: the queue, its schedule and delivery."""
