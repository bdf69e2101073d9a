import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA = pathlib.Path(os.environ.get("INTROSPECTIVE_DATA", REPO.parent / "shared" / "data"))
MINI = DATA / "cifar10-mini"


@pytest.fixture
def mini_dataset() -> str:
    if not (MINI / "train").is_dir():
        pytest.skip(f"real data not found at {MINI} (set INTROSPECTIVE_DATA)")
    return f"folder:{MINI}"
