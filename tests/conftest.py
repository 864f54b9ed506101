"""Fixtures shared by the test modules."""

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The project's offline copy of real data, ``<repo>/../shared/data`` (see its README).

    Fails, rather than skips, when the folder is missing: every test machine has it.
    """
    if not (SHARED_DATA / "mnist").is_dir() or not (SHARED_DATA / "omniglot").is_dir():
        pytest.fail(
            f"shared data not found at {SHARED_DATA} (expected mnist/ and omniglot/ in it); "
            "the tests read MNIST and Omniglot from <repo>/../shared/data"
        )
    return SHARED_DATA
