"""Referers that name no amoCRM account however they are read: http.hosts refuses each,
and the install (`GET /vidget`) answers `invalid_referer` to each without calling amoCRM."""

HOSTILE_REFERERS = [
    "evil.com\\.amocrm.ru",  # browsers read a backslash as "/": evil.com
    "evil.com\\@acme.amocrm.ru",
    "a..amocrm.ru",
    ".amocrm.ru",
    "amocrm.ru",  # the bare allowed domain is amoCRM itself, not an account
    "https://amocrm.ru",
    "KOMMO.COM",
    "-a.amocrm.ru",
    "a-.amocrm.ru",
    "a_b.amocrm.ru",
    "acme.amocrm.ru.",
    "acme.amocrm.ru..",
    "acme.amocrm.ru:8443",
    "acme.amocrm.ru:",
    "https://acme.amocrm.ru:443/",
    "x@evil.com",
    "x@acme.amocrm.ru",
    "https://evil.com@acme.amocrm.ru",
    "https://acme.amocrm.ru@evil.com",
    "acme.amocrm.ru@evil.com",
    "evil.com/.amocrm.ru",
    "evil.com?.amocrm.ru",
    "evil.com#.amocrm.ru",
    "evil.com%2F.amocrm.ru",  # a literal percent escape, not a host name
    "acme%2eamocrm.ru",
    "evil.com%00.amocrm.ru",
    "evil.com\x00.amocrm.ru",
    " acme.amocrm.ru",
    "acme.amocrm.ru ",
    "ac me.amocrm.ru",
    "acme.amocrm.ru\t",
    "\u0430cme.amocrm.ru",  # Cyrillic a
    "\uff41cme.amocrm.ru",  # fullwidth a
    "\u200bacme.amocrm.ru",  # zero-width space
    "acme\u3002amocrm.ru",  # ideographic full stop
    "acme.amocrm\uff0eru",  # fullwidth full stop
    "b\u00fccher.amocrm.ru",  # an IDN not in punycode
    "a" * 64 + ".amocrm.ru",  # a label over 63 characters
    ".".join(["a"] * 130) + ".amocrm.ru",  # a name over 253 characters
    "[::1]",
    "http://[::1].amocrm.ru",
    "127.0.0.1",
    "javascript://acme.amocrm.ru",
    "ftp://acme.amocrm.ru",
    "https:/acme.amocrm.ru",
    "//acme.amocrm.ru",
    "https://",
    "",
    "acme",
    "acme.evil.ru",
    "evilamocrm.ru",
    "acme.amocrm.ru.evil.com",
]
