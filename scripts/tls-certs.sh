#!/usr/bin/env bash
# A private CA and a server certificate for 127.0.0.1/localhost, for the test servers' TLS
# listeners (openssl). Made once per directory; clients trust DIR/ca.pem.
#   scripts/tls-certs.sh DIR     writes ca.pem, server.pem, server.key (and the CA's key)
set -euo pipefail
dir="${1:?usage: $0 DIR}"
[ -f "$dir/server.pem" ] && exit 0
command -v openssl >/dev/null || { echo "tls: openssl is required" >&2; exit 1; }
mkdir -p "$dir"
log="$dir/openssl.log"
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=eod test CA" \
  -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>>"$log"
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$dir/server.key" -out "$dir/server.csr" 2>>"$log"
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >"$dir/server.ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
  -CAcreateserial -days 3650 -extfile "$dir/server.ext" -out "$dir/server.pem" 2>>"$log"
chmod 600 "$dir/server.key" "$dir/ca.key"
