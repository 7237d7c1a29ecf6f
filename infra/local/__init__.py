"""The local stack: the whole service on this machine."""
