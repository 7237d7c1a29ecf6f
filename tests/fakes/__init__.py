"""Fakes of outside services and of the Lambda runtime."""
