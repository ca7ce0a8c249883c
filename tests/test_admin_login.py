"""The admin's login as a password guesser meets it: real POSTs to /admin/login/.

Personas: Maria manages a collection and logs in from her office (198.51.100.7); Mallory
guesses Maria's password from elsewhere (203.0.113.66). The lockout is django-axes', keyed
on username and client address together (settings: AXES_*; docs/admin.md).
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client

pytestmark = pytest.mark.django_db
LOGIN = "/admin/login/?next=/admin/"
OFFICE, MALLORY = "198.51.100.7", "203.0.113.66"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def maria() -> User:
    return User.objects.create_user("maria", "maria@example.com", PASSWORD, is_staff=True)


@pytest.fixture
def limit(settings) -> int:  # type: ignore[no-untyped-def]
    settings.AXES_FAILURE_LIMIT = 5
    return 5


def log_in(client: Client, username: str, password: str, **headers: str):  # type: ignore[no-untyped-def]
    return client.post(LOGIN, {"username": username, "password": password}, **headers)


def logged_in(response) -> bool:  # type: ignore[no-untyped-def]
    return response.status_code == 302 and response["Location"] == "/admin/"


def guess(client: Client, times: int, **headers: str) -> list[int]:
    """``times`` wrong passwords for Maria; the status of each answer."""
    return [log_in(client, "maria", "wrong guess", **headers).status_code for _ in range(times)]


def test_it_locks_a_username_out_from_an_address_after_the_failure_limit(
    maria: User, limit: int
) -> None:
    # Given Mallory's wrong guesses: the login form again each time, with its error, until
    # the limit-th, which is answered with the lockout page
    mallory = Client(REMOTE_ADDR=MALLORY)
    response = log_in(mallory, "maria", "wrong guess")
    assert b"Please enter the correct username and password" in response.content
    assert guess(mallory, limit - 1) == [200] * (limit - 2) + [429]

    # When Mallory then tries the right password
    response = log_in(mallory, "maria", PASSWORD)

    # Then it is refused with the lockout page, and no session is opened
    assert response.status_code == 429
    assert b"Too many failed logins" in response.content
    assert b"after 5 wrong passwords" in response.content
    assert b"Try again in" in response.content
    assert mallory.get("/admin/").status_code == 302  # to the login page: not logged in
    assert "_auth_user_id" not in mallory.session


def test_the_lockout_leaves_the_manager_at_her_own_address_and_other_accounts_alone(
    maria: User, limit: int
) -> None:
    User.objects.create_user("mallory", "m@example.com", "mallory's own", is_staff=True)
    guess(Client(REMOTE_ADDR=MALLORY), limit)

    # Maria, at the office, logs in as usual
    assert logged_in(log_in(Client(REMOTE_ADDR=OFFICE), "maria", PASSWORD))
    # and another account from Mallory's address is not locked either
    assert logged_in(log_in(Client(REMOTE_ADDR=MALLORY), "mallory", "mallory's own"))


def test_a_spoofed_x_forwarded_for_does_not_reset_the_count(maria: User, limit: int) -> None:
    # With no proxy configured (API_NUM_PROXIES=0) the address is REMOTE_ADDR: a fresh
    # X-Forwarded-For per guess is still the same client
    mallory = Client(REMOTE_ADDR=MALLORY)
    for i in range(limit):
        guess(mallory, 1, HTTP_X_FORWARDED_FOR=f"10.0.0.{i}")  # each from a "new" address
    response = log_in(mallory, "maria", PASSWORD, HTTP_X_FORWARDED_FOR="10.9.9.9")
    assert response.status_code == 429


def test_behind_a_proxy_the_address_comes_from_x_forwarded_for(
    settings, maria: User, limit: int
) -> None:  # type: ignore[no-untyped-def]
    # One proxy in front (API_NUM_PROXIES=1): every request arrives from the proxy's address,
    # and the client is the last hop the proxy appended
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    proxy = Client(REMOTE_ADDR="10.0.0.2")
    guess(proxy, limit, HTTP_X_FORWARDED_FOR=MALLORY)
    assert log_in(proxy, "maria", PASSWORD, HTTP_X_FORWARDED_FOR=MALLORY).status_code == 429
    # Maria behind the same proxy is another client
    assert logged_in(log_in(proxy, "maria", PASSWORD, HTTP_X_FORWARDED_FOR=OFFICE))


def test_after_the_cool_off_the_right_password_works_again(
    settings, maria: User, limit: int
) -> None:  # type: ignore[no-untyped-def]
    # a cool-off far longer than the guesses take (a 1 s one could lapse on a busy CI machine
    # before the locked check), then shortened: axes reads it at each check
    settings.AXES_COOLOFF_TIME = timedelta(minutes=10)
    mallory = Client(REMOTE_ADDR=MALLORY)
    guess(mallory, limit)
    assert log_in(mallory, "maria", PASSWORD).status_code == 429
    settings.AXES_COOLOFF_TIME = timedelta(seconds=1)
    time.sleep(1.2)
    assert logged_in(log_in(mallory, "maria", PASSWORD))


def test_a_successful_login_clears_the_count(maria: User, limit: int) -> None:
    # Maria mistypes limit-1 times, gets in, logs out, and mistypes again: never locked
    office = Client(REMOTE_ADDR=OFFICE)
    guess(office, limit - 1)
    assert logged_in(log_in(office, "maria", PASSWORD))
    office.post("/admin/logout/")
    guess(office, limit - 1)
    assert logged_in(log_in(office, "maria", PASSWORD))
