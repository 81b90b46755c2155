"""Accounts and their integrations, the Unisender connection, install and disconnect."""
