"""Delivery Lambda: the SQS consumer and its channels."""
