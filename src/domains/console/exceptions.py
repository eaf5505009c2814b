"""Errors of the console."""

from __future__ import annotations

from src.core.errors import Forbidden, Unauthenticated


class SignInRequired(Unauthenticated):
    """No signed-in browser: the console sends it to the sign-in page."""

    code = "sign_in_required"


class CsrfRefused(Forbidden):
    code = "csrf_refused"
