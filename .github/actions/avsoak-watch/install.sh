#!/usr/bin/env bash
# Installs avsoak: AVSOAK_INSTALL is `cargo` (build the command from AVSOAK_SOURCE, this
# repository, into ~/.avsoak) or the path of an avsoak .deb. Puts `avsoak` on the PATH
# of the steps after (GITHUB_PATH) when there is one.
set -euo pipefail
install="${AVSOAK_INSTALL:-cargo}"
if [[ "$install" == *.deb ]]; then
    sudo=()
    [[ "$(id -u)" == 0 ]] || sudo=(sudo)
    "${sudo[@]}" dpkg -i "$install"
    bin=/usr/bin
elif [[ "$install" == cargo ]]; then
    source="${AVSOAK_SOURCE:?AVSOAK_SOURCE names the avsoak checkout to build from}"
    root="${AVSOAK_ROOT:-$HOME/.avsoak}"
    cargo install --locked --root "$root" --path "$source/cli"
    bin="$root/bin"
else
    echo "install.sh: invalid AVSOAK_INSTALL '$install' (expected cargo or the path of a .deb)" >&2
    exit 2
fi
if [[ -n "${GITHUB_PATH:-}" ]]; then
    echo "$bin" >> "$GITHUB_PATH"
fi
"$bin/avsoak" --version
