"""Consent back in amoCRM (SPEC §9): an unsubscribe in Unisender tags and notes the amoCRM
contacts that hold the address."""
