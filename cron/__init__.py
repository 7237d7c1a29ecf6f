"""The scheduled dispatcher."""
