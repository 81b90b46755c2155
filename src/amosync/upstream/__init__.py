"""Plumbing for the calls amosync makes to amoCRM and Unisender: the retry policy and the
masking of secrets in what is logged (`retry`), and the per-host rate limits (`ratelimit`)."""
