"""Plumbing for the calls amosync makes to amoCRM and Unisender: the HTTP base both vendor
clients share (`client`), the retry policy and the masking of secrets in what is logged
(`retry`), and the per-host rate limits (`ratelimit`)."""
