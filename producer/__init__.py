"""The publish route's Lambda."""
