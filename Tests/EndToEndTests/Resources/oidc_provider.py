#!/usr/bin/env python3
"""Test OpenID Connect provider for the end-to-end tests, built on the `oidc-provider-mock` package.

Usage:
  python3 oidc_provider.py PORT [--client-id ID --client-secret SECRET --redirect-uri URI...]
                                [--client-auth-method client_secret_basic|client_secret_post]
                                [--user '{"sub": "alice", "email": "...", "groups": ["..."]}']...
                                [--require-nonce] [--token-max-age SECONDS]

Serves plain HTTP on 127.0.0.1:PORT and prints "listening on http://127.0.0.1:PORT" once bound. The
issuer is "http://" + the request's Host header, so clients must all use the same address (for
example http://127.0.0.1:PORT) for discovery, the browser redirect and the token request.

Endpoints (from the mock): /.well-known/openid-configuration, /jwks, /oauth2/authorize (the sign-in
form: one "sub" field and an "Authorize" button), /oauth2/token, /userinfo, and PUT /users/SUB with a
JSON object of claims to set a user's claims at run time. Claims outside the standard profile/email
claims (groups, upn, ...) always go into the ID token; name, preferred_username and email only when
the scopes profile/email are asked for. An unknown sub signs in with the claims {"email": sub}.
ID tokens are RS256 with iss, sub, aud (a JSON array: [client_id]), exp, iat, auth_time, nonce (when
sent) and at_hash; the token answer also has an access token and a refresh token.

Added here on top of the mock:
  - with --client-id, only that client is accepted, with that secret, auth method and redirect URIs
    (without it, the mock accepts any client id, any secret and any redirect URI);
  - PKCE: the authorization request must carry code_challenge with method S256, and the token request
    a matching code_verifier (the mock alone ignores PKCE);
  - a "kid" header in ID tokens, matching the JWKS;
  - pages without the mock's style sheet from a CDN (nothing leaves loopback);
  - POST /rotate-keys: sign with a new key from now on. The JWKS lists the new key first and keeps the
    old ones, unless called with ?drop_old=1. Answers {"kid": NEW_KID, "jwks_kids": [...]}.
"""

import argparse
import base64
import hashlib
import json
import os
import sys
import warnings
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import authlib.deprecate

warnings.filterwarnings("ignore", category=authlib.deprecate.AuthlibDeprecationWarning)

import flask  # noqa: E402
import jinja2  # noqa: E402
import werkzeug.serving  # noqa: E402
from authlib import jose  # noqa: E402

import oidc_provider_mock  # noqa: E402
import oidc_provider_mock._app as mock_app  # noqa: E402
from oidc_provider_mock._storage import Client, storage  # noqa: E402

BLUEPRINT = "oidc-provider-mock"


def parse_arguments():
    parser = argparse.ArgumentParser(description="Test OpenID Connect provider on 127.0.0.1.")
    parser.add_argument("port", type=int, help="port to listen on (0 picks a free one)")
    parser.add_argument("--client-id", help="accept only this client (default: accept any client)")
    parser.add_argument("--client-secret", help="the client's secret (required with --client-id)")
    parser.add_argument("--redirect-uri", action="append", default=[], help="allowed redirect URI (repeatable)")
    parser.add_argument("--client-auth-method", default="client_secret_basic",
                        choices=["client_secret_basic", "client_secret_post"],
                        help="token endpoint auth method of --client-id (default: %(default)s)")
    parser.add_argument("--user", action="append", default=[], metavar="JSON",
                        help='predefined user: a JSON object of claims with a "sub" (repeatable)')
    parser.add_argument("--require-nonce", action="store_true", help="reject authorization requests without a nonce")
    parser.add_argument("--token-max-age", type=int, default=3600, help="ID and access token lifetime in seconds")
    arguments = parser.parse_args()
    if arguments.client_id and not (arguments.client_secret and arguments.redirect_uri):
        parser.error("--client-id needs --client-secret and at least one --redirect-uri")
    return arguments


def make_users(user_arguments):
    users = []
    for text in user_arguments:
        claims = json.loads(text)
        sub = claims.pop("sub")
        users.append(oidc_provider_mock.User(sub=sub, claims=claims))
    return users


def add_kid_to_id_tokens():
    """The mock signs ID tokens without a "kid" header; add the signing key's kid."""
    original = mock_app.OpenIDCode.get_encode_header

    def get_encode_header(self, client):
        return {**original(self, client), "kid": storage.jwk.as_dict()["kid"]}

    mock_app.OpenIDCode.get_encode_header = get_encode_header


# The mock's pages load a style sheet from a CDN; serve them without it so the browser stays on loopback.
LOCAL_TEMPLATES = jinja2.DictLoader({
    "_base.html": "<!doctype html>\n<html lang=\"en\"><main>{% block content %}{{ content }}{% endblock %}</main></html>\n",
    "error.html": "{% extends '_base.html' %}{% block content %}<h1>Error: {{ name }}</h1>\n"
                  "<p>{{ description }}</p>{% endblock %}",
})


def s256(verifier):
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def oauth_error(error, description, status=400):
    return flask.jsonify({"error": error, "error_description": description}), status


def extend(app, arguments):
    views = app.view_functions
    challenges = {}  # authorization code -> PKCE code_challenge
    old_keys = []  # retired signing keys still published in the JWKS

    original_discovery = views[f"{BLUEPRINT}.openid_config"]

    def discovery():
        document = original_discovery().get_json()
        document["code_challenge_methods_supported"] = ["S256"]
        document["token_endpoint_auth_methods_supported"] = (
            [arguments.client_auth_method] if arguments.client_id else ["client_secret_basic", "client_secret_post"])
        return flask.jsonify(document)

    original_authorize = views[f"{BLUEPRINT}.authorize"]

    def authorize():
        if flask.request.args.get("code_challenge_method") != "S256" or not flask.request.args.get("code_challenge"):
            return "PKCE required: code_challenge with code_challenge_method=S256\n", 400
        response = flask.make_response(original_authorize())
        code = parse_qs(urlparse(response.headers.get("Location", "")).query).get("code")
        if code:
            challenges[code[0]] = flask.request.args["code_challenge"]
        return response

    original_token = views[f"{BLUEPRINT}.issue_token"]

    def token():
        form = flask.request.form
        if form.get("grant_type") == "authorization_code":
            # Fail closed: a code whose challenge was not seen is refused like a wrong verifier.
            challenge = challenges.pop(form.get("code", ""), None)
            if challenge is None:
                return oauth_error("invalid_grant", "no PKCE code_challenge was recorded for this code")
            if s256(form.get("code_verifier", "")) != challenge:
                return oauth_error("invalid_grant", "PKCE code_verifier does not match code_challenge")
        return original_token()

    def jwks():
        return flask.jsonify(jose.KeySet([storage.jwk, *old_keys]).as_dict())

    def rotate_keys():
        if flask.request.args.get("drop_old") == "1":
            old_keys.clear()
        else:
            old_keys.insert(0, storage.jwk)
        storage.jwk = jose.RSAKey.generate_key(is_private=True)
        kids = [key.as_dict()["kid"] for key in [storage.jwk, *old_keys]]
        return flask.jsonify({"kid": kids[0], "jwks_kids": kids})

    views[f"{BLUEPRINT}.openid_config"] = discovery
    views[f"{BLUEPRINT}.authorize"] = authorize
    views[f"{BLUEPRINT}.issue_token"] = token
    views[f"{BLUEPRINT}.jwks"] = jwks
    app.add_url_rule("/rotate-keys", "rotate_keys", rotate_keys, methods=["POST"])


def register_client(app, arguments):
    with app.test_request_context():
        app.preprocess_request()  # the mock's before_request hook makes `storage` available
        storage.store_client(Client(
            id=arguments.client_id,
            secret=arguments.client_secret,
            redirect_uris=arguments.redirect_uri,
            allowed_scopes=Client.SCOPES_SUPPORTED,
            token_endpoint_auth_method=arguments.client_auth_method,
        ))


def main():
    arguments = parse_arguments()
    os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"  # plain HTTP on loopback
    add_kid_to_id_tokens()
    app = oidc_provider_mock.app(
        require_client_registration=bool(arguments.client_id),
        require_nonce=arguments.require_nonce,
        access_token_max_age=timedelta(seconds=arguments.token_max_age),
        user_claims=make_users(arguments.user),
    )
    app.jinja_loader = jinja2.ChoiceLoader([LOCAL_TEMPLATES, app.jinja_loader])
    extend(app, arguments)
    if arguments.client_id:
        register_client(app, arguments)
    server = werkzeug.serving.make_server("127.0.0.1", arguments.port, app, threaded=True)
    print(f"listening on http://127.0.0.1:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
