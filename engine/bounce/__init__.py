"""Bounce and defer: delivery status notifications and Badmail."""
