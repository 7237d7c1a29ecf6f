"""Management routes, the admin authorizer and the status route."""
