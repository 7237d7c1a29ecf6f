"""One module per channel behind one interface."""
