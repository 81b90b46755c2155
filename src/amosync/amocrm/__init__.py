"""amoCRM (Kommo): the API client, OAuth tokens, widget disposable tokens, webhook payloads."""
