"""Contacts → Unisender: mapping, full sync, webhook changes, reconciliation."""
