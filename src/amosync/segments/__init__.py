"""What goes to Unisender beyond the address: segment lists and field mapping (SPEC §8)."""
