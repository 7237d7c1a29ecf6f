"""Helpers the test suites share: AWS resources under moto, API Gateway events, Lambda contexts."""
