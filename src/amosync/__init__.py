"""amosync keeps the e-mail addresses of amoCRM contacts in a Unisender list."""

__version__ = "0.1.0"
