"""Plumbing for the calls amosync makes to amoCRM and Unisender: the HTTP base both vendor
clients share (`client`), the retry policy (`retry`), the per-host rate limits
(`ratelimit`), and what of a secret may be logged or used as a key (`redact`)."""
