"""Unisender: the API client and its typed answers."""
