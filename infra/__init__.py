"""Resources, migrations and the local stack."""
