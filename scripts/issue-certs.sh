#!/usr/bin/env bash
# Issue a CA and per-role certificates for a test or small Flotilla cluster.
#
#   scripts/issue-certs.sh DIR NAME:ROLE[:SAN,SAN...] ...
#
# ROLE is admin, operator, viewer, agent or coordinator (docs/security.md,
# "Roles"); join several with '+' (e.g. ops:operator+viewer). @PROJECT
# among them scopes the certificate to a project (OU=project:PROJECT;
# e.g. bob:operator+@team-a+@team-b). An agent's
# NAME is its host id; a coordinator's, its node id. Every certificate is
# valid for 127.0.0.1 and localhost plus the SANs given (IPs or DNS names).
# DIR/ca.pem and DIR/ca-key.pem are made once and reused; each NAME gets
# DIR/NAME.pem and DIR/NAME-key.pem (the file names flotilla's --tls-*
# flags and internal/mtls use). ANY_OU=1 lets ROLE be any OU (a certificate
# that may call nothing, for tests).
set -euo pipefail

usage() { echo "usage: $0 DIR NAME:ROLE[:SAN,...] ..." >&2; exit 2; }
[ $# -ge 2 ] || usage
dir=$1; shift
mkdir -p "$dir"
umask 077
days=${DAYS:-365}

if [ ! -f "$dir/ca.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$((days * 5))" \
    -subj "/CN=flotilla CA" -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi

for spec in "$@"; do
  IFS=: read -r name roles sans <<<"$spec"
  [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$ ]] || { echo "$0: bad name in $spec" >&2; exit 2; }
  [ -n "$roles" ] || usage
  subj="/CN=$name"
  IFS=+ read -ra rs <<<"$roles"
  for r in "${rs[@]}"; do
    case $r in admin|operator|viewer|agent|coordinator) subj="$subj/OU=$r" ;;
      @*) [[ ${r#@} =~ ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$ ]] || { echo "$0: bad project $r" >&2; exit 2; }
          subj="$subj/OU=project:${r#@}" ;;
      *) if [ "${ANY_OU:-}" = 1 ] && [[ $r =~ ^[a-z0-9-]+$ ]]; then subj="$subj/OU=$r"; continue; fi
         echo "$0: unknown role $r (admin, operator, viewer, agent, coordinator)" >&2; exit 2 ;;
    esac
  done
  san="IP:127.0.0.1,DNS:localhost"
  IFS=, read -ra ss <<<"${sans:-}"
  for s in "${ss[@]}"; do
    if [[ $s =~ ^[0-9.]+$ || $s == *:* ]]; then san="$san,IP:$s"; else san="$san,DNS:$s"; fi
  done
  ext=$(mktemp)
  trap 'rm -f "$ext"' EXIT
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=%s\n' "$san" >"$ext"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$subj" \
    -keyout "$dir/$name-key.pem" -out "$dir/$name.csr" 2>/dev/null
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" -CAcreateserial \
    -days "$days" -extfile "$ext" -out "$dir/$name.pem" 2>/dev/null
  rm -f "$dir/$name.csr" "$ext"
  echo "$dir/$name.pem ($subj; $san)"
done
