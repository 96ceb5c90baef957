#!/usr/bin/env bash
# Checks a built hookd .deb: every path the package promises, the conffile, the
# maintainer scripts and dependencies; then, where systemd-analyze exists, that the
# packaged unit verifies against the packaged binary and man page.
set -euo pipefail
deb=${1:?usage: packaging/check-deb.sh PATH.deb}
fail() {
  echo "check-deb: $deb: $*" >&2
  exit 1
}

contents=$(dpkg-deb --contents "$deb")
for path in \
  usr/bin/hookd \
  lib/systemd/system/hookd.service \
  lib/systemd/system/hookd.socket \
  etc/hookd/hookd.toml \
  usr/lib/sysusers.d/hookd.conf \
  usr/share/man/man1/hookd.1.gz \
  usr/share/man/man1/hookd-serve.1.gz \
  usr/share/bash-completion/completions/hookd \
  usr/share/zsh/vendor-completions/_hookd \
  usr/share/fish/vendor_completions.d/hookd.fish; do
  grep -qE " \./$path\$" <<<"$contents" || fail "missing /$path"
done
grep -qE '^-rwxr-xr-x (0/0|root/root) .* \./usr/bin/hookd$' <<<"$contents" ||
  fail "/usr/bin/hookd is not mode 0755 root:root"

[ "$(dpkg-deb --info "$deb" conffiles)" = /etc/hookd/hookd.toml ] ||
  fail "conffiles is not exactly /etc/hookd/hookd.toml"
info=$(dpkg-deb --info "$deb")
for script in postinst prerm postrm; do
  grep -qE "lines +\* +$script " <<<"$info" || fail "no executable $script"
done
grep -qw adduser <<<"$(dpkg-deb --field "$deb" Depends)" || fail "Depends lacks adduser"

if command -v systemd-analyze >/dev/null; then
  # verify wants ExecStart= to exist and man:hookd(1) to resolve: check the unpacked
  # unit with ExecStart pointed at the unpacked binary and MANPATH at its man pages.
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  dpkg-deb -x "$deb" "$root"
  mkdir "$root/unit"
  sed "s#^ExecStart=/usr/bin/hookd #ExecStart=$root/usr/bin/hookd #" \
    "$root/lib/systemd/system/hookd.service" >"$root/unit/hookd.service"
  cp "$root/lib/systemd/system/hookd.socket" "$root/unit/hookd.socket"
  # Unknown keys are only warnings (exit 0), so any line about the units fails too.
  out=$(MANPATH="$root/usr/share/man" systemd-analyze verify "$root/unit/hookd.service" "$root/unit/hookd.socket" 2>&1) ||
    fail "systemd-analyze verify: $out"
  ! grep -q hookd <<<"$out" || fail "systemd-analyze verify: $out"
else
  echo "check-deb: systemd-analyze not found; unit not verified" >&2
fi
echo "check-deb: $deb OK"
