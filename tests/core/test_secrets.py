"""A storage URL's password is shown nowhere: masked in every message and record, the full URL
taken from ``$RKSEARCH_STORAGE`` (the run on a real PostgreSQL server: tests/test_postgres.py)."""
from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from rksearch.core.errors import RKSearchError
from rksearch.core.secrets import has_masked_password, mask_secrets, masked
from rksearch.storage.urls import shown_url

SECRET = "Pw-7f3a9"


@pytest.mark.parametrize("url, shown", [
    (f"postgresql://rk:{SECRET}@db.example:5432/studies", "postgresql://rk:***@db.example:5432/studies"),
    (f"postgresql+psycopg://rk:{SECRET}%40x@db/studies?sslmode=require",
     "postgresql+psycopg://rk:***@db/studies?sslmode=require"),
    (f"mysql://:{SECRET}@db/studies", "mysql://:***@db/studies"),
    (f"postgresql://db/studies?sslmode=require&password={SECRET}", "postgresql://db/studies?sslmode=require&password=***"),
    # SQLAlchemy cannot parse these: masked all the same
    (f"postgresql://rk:{SECRET}@db:notaport/studies", "postgresql://rk:***@db:notaport/studies"),
    (f"postgresql://rk:{SECRET}@x@db/studies", "postgresql://rk:***@db/studies"),  # an unquoted @ in the password
    (f"no+such+dialect://rk:{SECRET}@db/studies", "no+such+dialect://rk:***@db/studies"),
    # nothing to mask
    ("postgresql://rk@db/studies", "postgresql://rk@db/studies"),
    ("postgresql://db:5432/studies", "postgresql://db:5432/studies"),
    ("sqlite:////tmp/a:b@c/optuna.db", "sqlite:////tmp/a:b@c/optuna.db"),
])
def test_shown_url_masks_the_password(url: str, shown: str) -> None:
    assert shown_url(url) == shown and SECRET not in shown
    assert has_masked_password(shown) == (shown != url)
    assert shown_url(shown) == shown  # masking twice changes nothing


def test_secrets_masked_in_text_and_values() -> None:
    text = f"storage: 'postgresql://rk:{SECRET}@db/s'  # or mysql://me:{SECRET}@other/s, mail me@example.org"
    assert mask_secrets(text) == "storage: 'postgresql://rk:***@db/s'  # or mysql://me:***@other/s, mail me@example.org"
    assert masked({"storage": f"postgresql://rk:{SECRET}@db/s", "n": 3, "l": [f"mysql://a:{SECRET}@b/c"]}) == \
        {"storage": "postgresql://rk:***@db/s", "n": 3, "l": ["mysql://a:***@b/c"]}
    assert masked((("storage", f"postgresql://rk:{SECRET}@db/s"),)) == (("storage", "postgresql://rk:***@db/s"),)


def test_every_user_error_masks_passwords() -> None:
    e = RKSearchError(f"cannot open postgresql://rk:{SECRET}@db:x/s", source=f"postgresql://rk:{SECRET}@db:x/s",
                      field=f"mysql://a:{SECRET}@b/c")
    assert SECRET not in str(e) and str(e).count("***") == 3


@pytest.mark.parametrize("url", [f"postgresql://rk:{SECRET}@127.0.0.1:notaport/studies",
                                 f"postgresql://rk:{SECRET}@@@127.0.0.1:1/studies",
                                 f"nosuchdialect://rk:{SECRET}@127.0.0.1:1/studies"])
def test_an_unusable_url_is_never_echoed(url: str) -> None:
    """SQLAlchemy's own message quotes a URL it cannot parse as given."""
    from rksearch.storage.open import open_storage

    with pytest.raises(RKSearchError) as e:
        open_storage(url, source=None, field="--storage")
    assert SECRET not in str(e.value) and "***" in str(e.value)


@pytest.fixture
def postgres_folder(study: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A study folder whose study ``rksearch run`` recorded in a server, password masked."""
    from rksearch.storage.folder import record_storage

    monkeypatch.delenv("RKSEARCH_STORAGE", raising=False)
    record_storage(study, f"postgresql://rk:{SECRET}@127.0.0.1:1/studies")
    assert SECRET not in (study / "storage.url").read_text()
    return study


@pytest.fixture
def study(tmp_path: Path) -> Path:
    folder = tmp_path / "demo"
    folder.mkdir()
    return folder


@pytest.mark.parametrize("command", [["pareto"], ["export", "-o", "best.yaml"], ["dashboard", "--port", "0"]])
def test_a_masked_record_asks_for_rksearch_storage(postgres_folder: Path, command: list[str], rksearch_cli) -> None:
    r = rksearch_cli(command[0], postgres_folder, *command[1:], cwd=postgres_folder.parent)
    assert r.returncode == 2 and r.stdout == "", r.stderr
    assert r.stderr.strip() == (f"error: {postgres_folder / 'storage.url'}: the storage postgresql://rk:***@127.0.0.1:1/"
                                "studies has its password masked (rksearch records no password); set RKSEARCH_STORAGE "
                                "to its full URL")


def test_rksearch_storage_must_name_the_recorded_storage(postgres_folder: Path, rksearch_cli) -> None:
    r = rksearch_cli("pareto", postgres_folder, env={"RKSEARCH_STORAGE": f"postgresql://rk:{SECRET}@elsewhere/studies"})
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "RKSEARCH_STORAGE names postgresql://rk:***@elsewhere/studies, not it" in r.stderr
    assert SECRET not in r.stderr + r.stdout


def test_rksearch_storage_supplies_the_password(postgres_folder: Path, rksearch_cli) -> None:
    """The full URL comes from the environment: the server (none on port 1) is then reached."""
    r = rksearch_cli("pareto", postgres_folder, env={"RKSEARCH_STORAGE": f"postgresql://rk:{SECRET}@127.0.0.1:1/studies"})
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "cannot" in r.stderr and "postgresql://rk:***@127.0.0.1:1/studies" in r.stderr
    assert SECRET not in r.stderr + r.stdout


def test_an_unparsable_storage_option_is_masked(study: Path, rksearch_cli) -> None:
    for url in (f"postgresql://rk:{SECRET}@127.0.0.1:notaport/studies", f"nosuch://rk:{SECRET}@h/s"):
        r = rksearch_cli("pareto", study, "--storage", url)
        assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert SECRET not in r.stderr + r.stdout and "rk:***@" in r.stderr


def test_searcher_state_holds_no_password(tmp_path: Path, demo_space) -> None:
    """What Ray Tune pickles of the searcher under its temporary folder: no storage URL, and no
    ``--set storage=URL`` either."""
    import optuna

    from rksearch.search.searcher import RKSearcher
    from rksearch.space.search_space import load_space

    url = f"postgresql://rk:{SECRET}@db/studies"
    space = load_space(demo_space("secret", storage=url), {"storage": url})
    searcher = RKSearcher(space, optuna.storages.InMemoryStorage(), "driver")
    state = pickle.dumps(searcher)
    assert SECRET.encode() not in state
    assert pickle.loads(state).space.overrides == (("storage", "postgresql://rk:***@db/studies"),)
