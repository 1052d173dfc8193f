"""A study's storage URL as messages and reports show it: never with its password. Its own module, as both the
sweep (study.py) and its report (report.py) name storage."""

from __future__ import annotations


def safe_url(url: str) -> str:
    """The storage URL without its password, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not even a URL: show it as given, it holds no password we could find
        return url
