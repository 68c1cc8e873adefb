from __future__ import annotations

import pytest

from app.errors import ProblemError
from app.settings import Settings
from app.urls import check_user_url


def _settings(**kw) -> Settings:
    base = {
        "url_allowed_hosts": [
            "localhost",
            "*.internal.test",
            "127.0.0.1",
            "169.254.169.254",
            "10.1.2.3",
            "[::1]",
            "::1",
        ]
    }
    return Settings(**{**base, **kw})


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/model.tar.gz",  # loopback
        "https://localhost/x",  # resolves to loopback
        "https://169.254.169.254/latest/meta-data/",  # link-local (cloud metadata)
        "https://10.1.2.3/x",  # private
        "https://[::1]/x",  # IPv6 loopback
    ],
)
def test_private_addresses_refused(url):
    with pytest.raises(ProblemError) as e:
        check_user_url(url, settings=_settings(), param="teacher.uri")
    assert e.value.status == 422 and e.value.code == "url_not_allowed"
    assert e.value.param == "teacher.uri"
    assert "private, loopback or link-local" in e.value.detail


def test_private_allowed_when_configured():
    checked = check_user_url("https://127.0.0.1:8443/x", settings=_settings(url_allow_private=True))
    assert checked.addresses == ("127.0.0.1",) and checked.port == 8443


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("http://127.0.0.1/x", "scheme 'http'"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("gopher://localhost/", "scheme 'gopher'"),
        ("https://evil.example.com/x", "not in the allowed hosts"),
        ("https://internal.test/x", "not in the allowed hosts"),  # *.x does not match x itself
        ("https://user:pw@localhost/x", "credentials"),
        ("https:///nohost", "no host"),
        ("https://localhost:99999/x", "not a valid URL"),
    ],
)
def test_scheme_host_and_form(url, needle):
    with pytest.raises(ProblemError) as e:
        check_user_url(url, settings=_settings(url_allow_private=True))
    assert needle in e.value.detail


def test_defaults_allow_any_public_https_host_only():
    # "*" lets any host through the name check; the address check still refuses
    # loopback, and the scheme check plain http.
    assert Settings().url_allowed_hosts == ["*"]
    with pytest.raises(ProblemError) as e:
        check_user_url("https://localhost/x", settings=Settings())
    assert "private, loopback or link-local" in e.value.detail
    with pytest.raises(ProblemError) as e:
        check_user_url("http://localhost/x", settings=Settings())
    assert "scheme 'http'" in e.value.detail


def test_wildcard_host_that_does_not_resolve():
    with pytest.raises(ProblemError) as e:
        check_user_url("https://models.internal.test/x", settings=_settings())
    assert "does not resolve" in e.value.detail
