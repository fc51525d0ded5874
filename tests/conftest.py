"""Shared fixtures around the helpers in ``tests/helpers.py`` (tiny potentials, test cells)."""

from __future__ import annotations

import pytest

from tests.helpers import make_calc, sheared_cell


@pytest.fixture
def calc_factory():
    """The :func:`tests.helpers.make_calc` factory."""
    return make_calc


@pytest.fixture
def sheared():
    """The :func:`tests.helpers.sheared_cell` 4-atom CuAu cell."""
    return sheared_cell()
