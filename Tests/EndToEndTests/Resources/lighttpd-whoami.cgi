#!/bin/sh
# The user lighttpd's mod_authn_gssapi authenticated, in the test bed's key=value lines.
printf 'Content-Type: text/plain\r\n\r\n'
printf 'user=%s\nrequest_had_token=yes\nserver=lighttpd\n' "$REMOTE_USER"
