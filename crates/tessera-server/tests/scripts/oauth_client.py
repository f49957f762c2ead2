#!/usr/bin/env python3
"""Talks to a Tessera server through authlib, a standard OAuth 2.0 client
library (PyPI `authlib`, installed by scripts/test), exactly as a service
written against RFC 6749/7662 would: no adapter for Tessera.

Usage:
  oauth_client.py introspect BASE_URL METHOD CLIENT_ID CLIENT_SECRET TOKEN [HINT]
      METHOD is client_secret_basic or client_secret_post.
      Prints {"status": <HTTP status>, "body": <JSON answer>}.
  oauth_client.py refresh BASE_URL REFRESH_TOKEN
      OAuth2Session.refresh_token() against /auth/refresh.
      Prints {"token": {...}} or {"error": "<OAuth error>"}.
"""
import json
import os
import sys

# The test servers listen on plain loopback HTTP.
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")

from authlib.integrations.base_client.errors import OAuthError  # noqa: E402
from authlib.integrations.requests_client import OAuth2Session  # noqa: E402


def introspect(base, method, client_id, secret, token, hint=None):
    client = OAuth2Session(client_id, secret, token_endpoint_auth_method=method)
    response = client.introspect_token(base + "/oauth/introspect", token=token, token_type_hint=hint)
    return {"status": response.status_code, "body": response.json()}


def refresh(base, refresh_token):
    # A public client (no secret): authlib sends client_id in the body,
    # which the server ignores.
    client = OAuth2Session("mobile-app", token_endpoint_auth_method="none")
    try:
        token = client.refresh_token(base + "/auth/refresh", refresh_token=refresh_token)
    except OAuthError as error:
        return {"error": error.error}
    return {"token": dict(token)}


def main(argv):
    command, rest = argv[1], argv[2:]
    if command == "introspect":
        answer = introspect(*rest)
    elif command == "refresh":
        answer = refresh(*rest)
    else:
        raise SystemExit(f"unknown command {command}")
    print(json.dumps(answer))


if __name__ == "__main__":
    main(sys.argv)
