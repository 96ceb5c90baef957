#!/usr/bin/env python3
"""Verifies one received webhook with the `standardwebhooks` package from PyPI, an
implementation of the Standard Webhooks spec independent of hookd's own.

Usage: verify_standard_webhook.py SECRET_FILE REQUEST_FILE
REQUEST_FILE holds JSON: {"headers": {name: value}, "body": "<the raw body>"}.
Prints the verified payload as JSON and exits 0, or prints why not and exits 1.
"""
import json
import sys

from standardwebhooks import Webhook


def main() -> int:
    secret_file, request_file = sys.argv[1], sys.argv[2]
    with open(secret_file, encoding="utf-8") as f:
        secret = f.read().strip()
    with open(request_file, encoding="utf-8") as f:
        request = json.load(f)
    try:
        payload = Webhook(secret).verify(request["body"], request["headers"])
    except Exception as e:  # the library's own verification errors
        print(f"not verified: {type(e).__name__}: {e}")
        return 1
    print(json.dumps(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
