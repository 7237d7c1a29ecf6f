"""The settings of the spine's function roles (publish, the management API, the authorizer, the consumer), one module
each with the mixins no other role uses: a function defines its own role's models at its cold start, not every role's.
The base and ``load_settings`` are ``core/settings.py``'s; the mixins several roles share, ``shared``'s."""
