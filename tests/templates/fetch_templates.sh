#!/usr/bin/env bash
# Fetches the real chat templates the golden tests render (Qwen, Llama 3.x, Mistral,
# DeepSeek, Hermes) into a cache directory outside git, once.
#
# The templates come from the llama.cpp sources vendored in the llama-cpp-python source
# distribution on PyPI (vendor/llama.cpp/models/templates/*.jinja). The sdist version, its
# sha256 and each template's sha256 are pinned below. The sdist is fetched by URL rather than
# with `pip download --no-binary :all:`, which would build cmake from source just to read the
# package metadata.
#
# Usage: tests/templates/fetch_templates.sh [DIR]
#   DIR defaults to $WICK_TEMPLATES_DIR, else ${XDG_CACHE_HOME:-~/.cache}/wick/templates.
# Idempotent: files already present with the right sha256 are kept. Exits non-zero with an
# `error: ...` line on failure.
set -euo pipefail

SDIST_VERSION=0.3.36
SDIST_URL="https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/llama_cpp_python-${SDIST_VERSION}.tar.gz"
SDIST_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e

# file  sha256
TEMPLATES="
Qwen-Qwen2.5-7B-Instruct.jinja cd8e9439f0570856fd70470bf8889ebd8b5d1107207f67a5efb46e342330527f
Qwen-Qwen3-0.6B.jinja 87a2728cb8dc9fe424d624542f6060ec05a1d285ebbec578bb078900e33396b5
Qwen3-Coder.jinja d287fb2edf144207f868ae1b282755dc19db2a3f1c5b3a3d57e9e5abffa98392
Qwen-QwQ-32B.jinja 5ed15374ce53e19a7798710736a2c9fe41c79f7385e8421a2080d6575a80ef1b
meta-llama-Llama-3.1-8B-Instruct.jinja e10ca381b1ccc5cf9db52e371f3b6651576caee0a630b452e2816b2d404d4b65
meta-llama-Llama-3.2-3B-Instruct.jinja 5816fce10444e03c2e9ee1ef8a4a1ea61ae7e69e438613f3b17b69d0426223a4
mistralai-Mistral-Nemo-Instruct-2407.jinja e4676cb56dffea7782fd3e2b577cfaf1e123537e6ef49b3ec7caa6c095c62272
Mistral-Small-3.2-24B-Instruct-2506.jinja 5b8f31f11198696548d544dbe424a3c1ef244d00a475f4e1bffb351fda085608
unsloth-mistral-Devstral-Small-2507.jinja 039a4710e2aabaa79e85a233fa3daa4fbc030a4a8dc218cb7f34fb0c4b8c13b1
deepseek-ai-DeepSeek-V3.1.jinja d9f5f351b276cf9e81d009db08830db7d38e94927aecd09a7beb43e2aafee94e
deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja bbe594884b44d740667ee65a70bc8d333a565eab3d63ea59f291ea73ada84ba6
deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja dd2675619a64a449cdcdd2b93e605a0a50764cee41e344f244752bc93643936c
NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja 7ce09d55d3690e06c70b5c07228cc7e8c99c43a23cdc027762be4011efcdea6c
"

die() { echo "error: $*" >&2; exit 1; }

DIR="${1:-${WICK_TEMPLATES_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wick/templates}}"
mkdir -p "$DIR" || die "cannot create $DIR"

sha() { sha256sum "$1" | cut -d' ' -f1; }

missing=0
while read -r file want; do
  [ -n "$file" ] || continue
  if [ ! -f "$DIR/$file" ] || [ "$(sha "$DIR/$file")" != "$want" ]; then
    missing=1
  fi
done <<< "$TEMPLATES"
if [ "$missing" = 0 ]; then
  echo "templates present in $DIR"
  exit 0
fi

command -v curl >/dev/null || die "curl is needed to download $SDIST_URL"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
sdist="$DIR/llama_cpp_python-${SDIST_VERSION}.tar.gz"
if [ ! -f "$sdist" ] || [ "$(sha "$sdist")" != "$SDIST_SHA256" ]; then
  echo "downloading llama-cpp-python ${SDIST_VERSION} sdist ($SDIST_URL)"
  curl -fsSL --retry 3 -o "$tmp/sdist.tar.gz" "$SDIST_URL" || die "download failed: $SDIST_URL"
  got="$(sha "$tmp/sdist.tar.gz")"
  [ "$got" = "$SDIST_SHA256" ] || die "sdist sha256 mismatch: got $got, want $SDIST_SHA256"
  mv "$tmp/sdist.tar.gz" "$sdist"
fi

prefix="llama_cpp_python-${SDIST_VERSION}/vendor/llama.cpp/models/templates"
while read -r file want; do
  [ -n "$file" ] || continue
  tar -xzf "$sdist" -C "$tmp" "$prefix/$file" || die "$file is not in the sdist"
  got="$(sha "$tmp/$prefix/$file")"
  [ "$got" = "$want" ] || die "$file sha256 mismatch: got $got, want $want"
  mv "$tmp/$prefix/$file" "$DIR/$file.partial"
  mv "$DIR/$file.partial" "$DIR/$file"
done <<< "$TEMPLATES"
echo "templates written to $DIR"
