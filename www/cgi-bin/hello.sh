#!/bin/sh
# CGI demo in POSIX sh: a header block, a blank line, a body.
printf 'Content-Type: text/plain; charset=utf-8\r\n\r\n'
printf 'Hello from sh!\n'
printf 'REQUEST_METHOD=%s\n' "${REQUEST_METHOD-}"
printf 'QUERY_STRING=%s\n' "${QUERY_STRING-}"
printf 'SERVER_SOFTWARE=%s\n' "${SERVER_SOFTWARE-}"
