"""Bounds of the ids the API takes, so an id no column can hold is a 422 up front.

amoCRM account ids and Unisender list ids are stored as BIGINT; sync run and job ids as
INTEGER. A path id out of range is a 422 in the API and "no such page" (404) on the
dashboard.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

BIGINT_MAX = 2**63 - 1
INTEGER_MAX = 2**31 - 1

AccountIdPath = Annotated[int, Path(gt=0, le=BIGINT_MAX, description="amoCRM account id")]
AccountIdQuery = Annotated[int, Query(gt=0, le=BIGINT_MAX, description="amoCRM account id")]
RunIdPath = Annotated[int, Path(gt=0, le=INTEGER_MAX, description="sync run id")]
JobIdPath = Annotated[int, Path(gt=0, le=INTEGER_MAX, description="job id")]
