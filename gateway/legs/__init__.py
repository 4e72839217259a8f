"""Downstream legs: each knows its transport and nothing about the call."""
