#!/usr/bin/env bash
# Installs what Tessera's tests need on a Debian machine, then runs every test.
#   - apt packages: oathtool (independent OTP peer), tmux (a real terminal for the CLI's prompts), openssl (test certificates for RadSec,
#     LDAPS and SAML), xmlsec1 (checks Tessera's SAML signatures; pysaml2 uses it too), chromium + chromium-driver (a real browser on the login page, through Selenium), freeradius + freeradius-utils (radclient, and FreeRADIUS as a proxy in front of
#     Tessera and as the benchmark's reference), slapd + ldap-utils (OpenLDAP with a fixture
#     directory per test, ldapwhoami), apache2 + libapache2-mod-auth-openidc + libapache2-mod-auth-mellon + libapache2-mod-shib (relying parties
#     run per test); their system services are not started. PostgreSQL when
#     none is reachable
#   - Python venvs in .venv/: privacyIDEA's and eduMFA's client classes, django-privacyidea-auth,
#     pyrad, aiosmtpd (a real SMTP server for the mail tests), authlib + PyJWT + pyhpke (OAuth2,
#     OpenID Connect, encrypted payloads), Selenium (headless Chromium), pysaml2 (a SAML SP)
#   - cargo-fuzz, for a bounded run of each fuzz target (the RADIUS decoder, the validate
#     parameters, SAML requests, sealed payloads)
#   - PostgreSQL: TESSERA_TEST_PG_URL, or postgres://postgres@127.0.0.1:5432/test (started or
#     created here when not reachable); MariaDB on 127.0.0.1:3306 (privacyIDEA installations to
#     migrate from; started or installed here when not reachable)
# Usage: scripts/test.sh [extra cargo-nextest/cargo-test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    as_root apt-get update -qq || true
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

apt_install oathtool openssl chromium chromium-driver xmlsec1 tmux
# FreeRADIUS and slapd must not start their system services on the standard ports: tests run
# their own.
if ! dpkg -s freeradius >/dev/null 2>&1 || ! dpkg -s freeradius-utils >/dev/null 2>&1 \
   || ! dpkg -s slapd >/dev/null 2>&1 || ! dpkg -s ldap-utils >/dev/null 2>&1; then
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy"
    trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt_install freeradius freeradius-utils slapd ldap-utils
fi
# Apache with mod_auth_openidc, mod_auth_mellon and Shibboleth SP 3 (shibd, mod_shib): relying parties as
# administrators deploy them; the tests start their own on loopback, not the system services.
if ! dpkg -s apache2 >/dev/null 2>&1 || ! dpkg -s libapache2-mod-auth-openidc >/dev/null 2>&1 \
   || ! dpkg -s libapache2-mod-auth-mellon >/dev/null 2>&1 || ! dpkg -s libapache2-mod-shib >/dev/null 2>&1; then
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy"
    trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt_install apache2 libapache2-mod-auth-openidc libapache2-mod-auth-mellon libapache2-mod-shib
fi

# Real privacyIDEA/eduMFA client peers, one venv each (their dependencies conflict).
venv_for() {
  local name=$1 req=tests/peers/requirements-$1.txt dir=.venv/$1
  local stamp; stamp=$(sha256sum "$req" | cut -d' ' -f1)
  if [ "$(cat "$dir/.stamp" 2>/dev/null)" != "$stamp" ]; then
    say "preparing the $name client peer ($req)"
    rm -rf "$dir"
    if ! python3 -m venv "$dir" >/dev/null 2>&1; then
      apt_install python3-venv
      python3 -m venv "$dir"
    fi
    # A download cut short (a hash mismatch, a reset connection) is tried again, past pip's
    # cache.
    local tries=1 cache=()
    until "$dir/bin/pip" install -q --disable-pip-version-check "${cache[@]}" -r "$req"; do
      if [ "$tries" -ge 3 ]; then
        echo "pip install -r $req failed $tries times" >&2
        exit 1
      fi
      tries=$((tries + 1))
      cache=(--no-cache-dir)
      say "pip install failed; trying again ($tries of 3)"
      sleep 5
    done
    echo "$stamp" > "$dir/.stamp"
  fi
}
for v in pi edu dj radius smtp oauth browser saml; do venv_for "$v"; done
export TESSERA_TEST_VENVS="$PWD/.venv"

export TESSERA_TEST_PG_URL="${TESSERA_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/test}"
pg_up() { psql "$TESSERA_TEST_PG_URL" -Atc 'select 1' >/dev/null 2>&1; }
if ! pg_up; then
  say "PostgreSQL is not reachable at $TESSERA_TEST_PG_URL: starting one"
  command -v pg_ctlcluster >/dev/null 2>&1 || apt_install postgresql postgresql-client
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1 || true)
  if [ -z "$version" ]; then
    apt_install postgresql
    version=$(ls /etc/postgresql | sort -V | tail -n1)
  fi
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1 && break; sleep 1; done
  if ! pg_up; then
    # A fresh cluster: let local TCP connections in without a password and create the database.
    hba=$(ls /etc/postgresql/"$version"/main/pg_hba.conf)
    if ! as_root grep -q 'tessera-tests' "$hba"; then
      as_root sh -c "printf '%s\n' 'host all all 127.0.0.1/32 trust # tessera-tests' 'host all all ::1/128 trust # tessera-tests' | cat - '$hba' > '$hba.new' && mv '$hba.new' '$hba'"
      as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    fi
    as_root su postgres -c "psql -Atc \"select 1 from pg_database where datname='test'\" | grep -q 1 || createdb test"
  fi
  pg_up || { echo "PostgreSQL still not reachable at $TESSERA_TEST_PG_URL" >&2; exit 1; }
fi

# MariaDB (127.0.0.1:3306, root without a password): privacyIDEA installations on MariaDB for
# `tessera migrate`. Started, or installed and started, when not reachable.
# The tests create and drop their databases with the mysql client.
command -v mysql >/dev/null 2>&1 || apt_install mariadb-client
maria_up() { mysql -h 127.0.0.1 -P 3306 -u root -e 'select 1' >/dev/null 2>&1; }
if ! maria_up; then
  say "MariaDB is not reachable at 127.0.0.1:3306: starting one"
  command -v mariadbd >/dev/null 2>&1 || apt_install mariadb-server mariadb-client
  as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  for _ in $(seq 1 30); do maria_up && break; mysql -u root -e 'select 1' >/dev/null 2>&1 && break; sleep 1; done
  if ! maria_up; then
    # A fresh server lets root in through its socket only: let it in over TCP too, without a
    # password, as the tests connect.
    as_root mysql -u root -e "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED VIA mysql_native_password USING PASSWORD(''); GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; FLUSH PRIVILEGES;" || true
  fi
  maria_up || { echo "MariaDB still not reachable at 127.0.0.1:3306" >&2; exit 1; }
fi

say "running the tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
  cargo test --workspace --doc
else
  cargo test --workspace --no-fail-fast "$@"
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
# Each fuzz target for a bounded time (TESSERA_FUZZ_SECONDS, default 30): the RADIUS decoder,
# and what the HTTP doors read from anyone (validate parameters, SAML requests, sealed payloads).
# Their builds go under the test build's target directory (kept between CI runs when that is).
fuzz_dir="${CARGO_TARGET_DIR:-$PWD/target}/fuzz"
fuzz() {
  local crate=$1 target=$2
  say "fuzzing $crate/$target for ${TESSERA_FUZZ_SECONDS:-30} s"
  (cd "crates/$crate/fuzz" && cargo fuzz run "$target" --sanitizer none --target-dir "$fuzz_dir/$crate" -- \
    -max_total_time="${TESSERA_FUZZ_SECONDS:-30}" -print_final_stats=1 2>&1 | tail -n 5)
}
fuzz radius-proto decode
for target in validate_params saml_request payload_open; do fuzz http "$target"; done
