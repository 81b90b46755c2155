"""amoCRM's 7 requests per second per account, token refreshes included, over real HTTP."""

from __future__ import annotations

import time

from sqlalchemy import select

from amosync.db.models import Integration
from tests.stack import ACCOUNT_ID, stack


async def test_a_full_sync_with_short_lived_tokens_stays_within_the_limit(
    database_url: str,
) -> None:
    async with stack(database_url) as s:
        amo = s.sandbox.amocrm
        amo.access_token_ttl = 4  # a token outlives ~25 calls at 7 per second
        amo.rate_limit_rps = 7
        amo.latency = 0.03
        await s.install()
        amo.generate_contacts(ACCOUNT_ID, 40 * 250, seed=5)  # 40 pages: ~6 s at 7 per second
        started = time.time()
        refreshes_before = amo.refresh_count
        await s.connect_unisender()
        await s.settle(timeout=60)
        run = (await s.http.get(f"/accounts/{ACCOUNT_ID}")).json()["last_sync"]
        assert run["status"] == "done", run
        assert run["fetched"] == 40 * 250
        arrivals = amo.arrivals(ACCOUNT_ID, since=started)
        refreshes = amo.refresh_count - refreshes_before
        # Refreshed as the tokens ran out, not before every call...
        assert 1 <= refreshes <= 4, refreshes
        assert len(arrivals) <= 41 + refreshes + 2  # the pages, the refreshes, a webhook
        # ...and every request, the refreshes too, within the account's limit.
        assert amo.max_per_second(ACCOUNT_ID, since=started) <= 7
        assert amo.rate_limited(ACCOUNT_ID) == 0
        async with s.services.sessions() as session:
            integration = (await session.execute(select(Integration))).scalar_one()
        assert integration.token_version >= 2
