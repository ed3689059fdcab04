import pytest

import companion
from companion.profiles import ENV_VAR, profile


def test_argument_selects_profile():
    quick = profile("quick")
    assert quick.name == "quick" and quick.device == "cpu"
    assert profile("full").name == "full"


def test_environment_variable_selects_profile(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "full")
    assert profile().name == "full"
    assert profile("quick").name == "quick"  # the argument wins over the environment


def test_automatic_choice_without_cuda(monkeypatch):
    import torch

    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert profile().name == "quick"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert profile().name == "full"


@pytest.mark.parametrize("source", ["argument", "environment"])
def test_unknown_profile_is_a_clear_error(monkeypatch, source):
    if source == "environment":
        monkeypatch.setenv(ENV_VAR, "fast")
        call = profile
    else:
        def call():
            return profile("fast")
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert "'fast'" in message and "full, quick" in message
    assert ENV_VAR in message


def test_pick_returns_the_profile_value():
    assert profile("quick").pick(quick=3, full=30) == 3
    assert profile("full").pick(quick=3, full=30) == 30


def test_top_level_exports():
    assert companion.profile is profile
    assert set(companion.PROFILES) == {"quick", "full"}
