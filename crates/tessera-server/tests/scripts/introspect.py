#!/usr/bin/env python3
"""Asks a Tessera server whether a token is active (RFC 7662), the way a
service written in another language would: standard library only.

Usage: introspect.py BASE_URL CLIENT_SECRET TOKEN
Prints {"status": <HTTP status>, "body": <JSON answer>} on one line.
"""
import base64
import json
import sys
import urllib.error
import urllib.parse
import urllib.request

base, secret, token = sys.argv[1:4]
form = urllib.parse.urlencode({"token": token, "token_type_hint": "access_token"}).encode()
request = urllib.request.Request(base + "/oauth/introspect", data=form, method="POST")
request.add_header("Content-Type", "application/x-www-form-urlencoded")
credentials = base64.b64encode(f"billing-service:{secret}".encode()).decode()
request.add_header("Authorization", "Basic " + credentials)
try:
    with urllib.request.urlopen(request, timeout=10) as response:
        status, text = response.status, response.read().decode()
except urllib.error.HTTPError as error:
    status, text = error.code, error.read().decode()
print(json.dumps({"status": status, "body": json.loads(text)}))
