"""Browser notifications: signed connection tokens, their signing keys in SSM, and the open WebSocket connections."""
