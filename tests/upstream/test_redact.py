"""What of a secret may leave the process: masked body excerpts, hashed registry keys."""

from __future__ import annotations

from amosync.upstream.redact import body_excerpt, secret_key


def test_secret_key_does_not_contain_the_secret() -> None:
    key = secret_key("unisender", "6abc-secret-api-key")
    assert key.startswith("unisender:")
    assert "secret" not in key
    assert key == secret_key("unisender", "6abc-secret-api-key")


def test_body_excerpt_masks_token_values() -> None:
    text = body_excerpt('{"access_token":"eyJabc","refresh_token": "def50","x":1}' + "y" * 900)
    assert "eyJabc" not in text
    assert "def50" not in text
    assert '"x":1' in text
    assert len(text) < 600
