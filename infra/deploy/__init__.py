"""Deploy checks: the packaged template's rules, and a rehearsal of `serverless deploy` against moto."""
