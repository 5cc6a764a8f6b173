"""School configuration is validated at load time and a mistake names its key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bot.config import ConfigError, load_config
from tests.support.harness import DEMO_CONFIG


def _with(tmp_path: Path, **aup: str) -> Path:
    raw = yaml.safe_load(DEMO_CONFIG.read_text())
    raw["schools"][0]["aup"].update(aup)
    path = tmp_path / "school.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_demo_config_loads() -> None:
    assert load_config(DEMO_CONFIG).schools[0].aup.renewal_month_day == "09-01"


def test_an_impossible_renewal_day_is_refused_with_its_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"schools\.0\.aup\.renewal_month_day"):
        load_config(_with(tmp_path, renewal_month_day="02-30"))


def test_29_february_is_a_valid_renewal_day(tmp_path: Path) -> None:
    assert load_config(_with(tmp_path, renewal_month_day="02-29")).schools[0].aup.renewal_month_day == "02-29"
