"""Fixtures of the catalog tests."""

from __future__ import annotations

import pytest
from catalog_samples import sample_snapshot

from posbatch.catalog import CatalogSnapshot


@pytest.fixture
def snapshot() -> CatalogSnapshot:
    """The sample catalog of catalog_samples, as checkout sees it."""
    return sample_snapshot()
