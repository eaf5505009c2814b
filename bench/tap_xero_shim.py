"""Runs singer-io's tap-xero, unchanged, against the sandbox. Executed by the Python of tap-xero's
own venv (bench/.venv-tap-xero), so it imports nothing from ledgersync.

    python tap_xero_shim.py ACCOUNTING_URL TOKEN_URL [tap-xero arguments...]

tap-xero reads its accounting URL from the module constant `tap_xero.client.BASE_URL`; its token
URL is a literal inside `XeroClient.refresh_credentials`, so the one token POST to that literal is
redirected to the sandbox. Nothing else of the tap is touched."""

import atexit
import json
import resource
import sys

import requests
import tap_xero
import tap_xero.client

XERO_TOKEN_URL = "https://identity.xero.com/connect/token"

accounting_url, token_url, *tap_arguments = sys.argv[1:]
tap_xero.client.BASE_URL = accounting_url
_post = requests.Session.post


def _post_to_sandbox(self, url, *args, **kwargs):  # type: ignore[no-untyped-def]
    return _post(self, token_url if url == XERO_TOKEN_URL else url, *args, **kwargs)


def _report_usage() -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report = {"cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024}
    print("TAP_XERO_USAGE " + json.dumps(report), file=sys.stderr)


requests.Session.post = _post_to_sandbox  # type: ignore[method-assign]
atexit.register(_report_usage)
sys.argv = ["tap-xero", *tap_arguments]
tap_xero.main()
