#!/usr/bin/env bash
# `netfence check` end to end: verdicts, rules, reasons, exit codes, refusals, JSON, policy files.
set -u
NF=${1:?usage: check_test.sh PATH/TO/netfence}
pass=0
failed=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ok() { pass=$((pass + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }

# expect_line OUTPUT REGEX DESCRIPTION
expect_line() { if grep -Eq -- "$2" <<<"$1"; then ok; else bad "$3: no line matching /$2/ in:"; echo "$1"; fi; }

# The issue's acceptance command.
out=$("$NF" check --allow-net 'api.example.com,*.example.org:443,10.0.0.0/8' \
  api.example.com:443 x.example.org:443 example.org:443 10.1.2.3:22 169.254.169.254:80 \
  x.example.org:80 2>"$tmp/err")
code=$?
[ "$code" -eq 1 ] && ok || bad "acceptance: exit code $code, want 1"
mapfile -t lines <<<"$out"
[ "${#lines[@]}" -eq 6 ] && ok || bad "acceptance: ${#lines[@]} lines, want 6"
expect_line "${lines[0]}" '^allow +api\.example\.com:443 +rule api\.example\.com$' "line 1"
expect_line "${lines[1]}" '^allow +x\.example\.org:443 +rule \*\.example\.org:443$' "line 2"
expect_line "${lines[2]}" '^deny +example\.org:443 +no allow_net rule matches example\.org .*subdomains only' "line 3"
expect_line "${lines[3]}" '^allow +10\.1\.2\.3:22 +rule 10\.0\.0\.0/8$' "line 4"
expect_line "${lines[4]}" '^deny +169\.254\.169\.254:80 .*cloud metadata endpoint' "line 5"
expect_line "${lines[5]}" "^deny +x\.example\.org:80 +rule '\*\.example\.org:443' matches x\.example\.org but not port 80" "line 6"
expect_line "$(cat "$tmp/err")" "warning: '\*\.example\.org:443' does not match 'example\.org' itself" "lint warning"

# All allowed -> exit 0.
"$NF" check --allow-net api.example.com api.example.com:443 >/dev/null 2>&1 && ok || bad "all allowed should exit 0"

# Refused entries: exit 2, a message quoting the entry.
for entry in '*' '*.com' 'https://a.com' '*example.com' '10.0.0.0/33' 'a..b' 'host:99999' '[::1'; do
  err=$("$NF" check --allow-net "$entry" a.example 2>&1 >/dev/null)
  code=$?
  [ "$code" -eq 2 ] && ok || bad "'$entry': exit $code, want 2"
  grep -qF "'$entry'" <<<"$err" && ok || bad "'$entry': message does not quote it: $err"
done

# JSON output.
out=$("$NF" check --json --allow-net '[2001:db8::/32]:443' '[2001:db8::5]:443' '[2001:db8::5]:80' '::ffff:169.254.169.254')
expect_line "$out" '^\{"target":"\[2001:db8::5\]:443","verdict":"allow","reason":"allow_rule","rule":"\[2001:db8::/32\]:443"' "json allow"
expect_line "$out" '"target":"\[2001:db8::5\]:80","verdict":"deny","reason":"wrong_port"' "json wrong port"
expect_line "$out" '"target":"::ffff:169.254.169.254","verdict":"deny","reason":"always_deny"' "json mapped metadata"

# Policy file, flags appended; deny precedence; disabled mode.
cat >"$tmp/p.json" <<'JSON'
{"mode":"enabled","allow_net":["*.example.com"],"deny_net":["secret.example.com"]}
JSON
out=$("$NF" check --policy "$tmp/p.json" --allow-net 203.0.113.0/24 www.example.com secret.example.com 203.0.113.9:25)
expect_line "$out" '^allow +www\.example\.com +rule \*\.example\.com$' "policy file allow"
expect_line "$out" "^deny +secret\.example\.com +secret\.example\.com is denied by deny_net rule 'secret\.example\.com'" "policy file deny"
expect_line "$out" '^allow +203\.0\.113\.9:25 +rule 203\.0\.113\.0/24$' "flag appended"
echo '{"mode":"enabled","allow_net":[],"bogus":1}' >"$tmp/bad.json"
err=$("$NF" check --policy "$tmp/bad.json" a.example 2>&1)
[ $? -eq 2 ] && grep -q 'unknown field "bogus"' <<<"$err" && ok || bad "unknown field: $err"
err=$("$NF" check --network disabled --allow-net a.example a.example 2>&1)
[ $? -eq 2 ] && grep -q "cannot be combined" <<<"$err" && ok || bad "disabled+allow: $err"
out=$("$NF" check --network disabled a.example:443)
[ $? -eq 1 ] && grep -q "network is disabled" <<<"$out" && ok || bad "disabled: $out"
"$NF" check --policy "$tmp/missing.json" a.example >/dev/null 2>&1
[ $? -eq 2 ] && ok || bad "missing policy file should exit 2"
err=$("$NF" check a.example:0 2>&1)
[ $? -eq 2 ] && grep -q "from 1 to 65535" <<<"$err" && ok || bad "bad target port: $err"
"$NF" --version | grep -Eq '^netfence [0-9]+\.[0-9]+' && ok || bad "--version"
"$NF" --help | grep -q check && ok || bad "--help"

echo "cli check: $pass passed, $failed failed"
[ "$failed" -eq 0 ]
