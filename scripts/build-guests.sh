#!/usr/bin/env bash
# Builds the Python and JavaScript example guests into components:
#
#   examples/python/{worker,web}/app.py -> target/components-py/{worker,web}.wasm
#   examples/python/plugin/app.py       -> target/components-py/plugin.wasm
#   examples/js/{worker,web}/app.js     -> target/components-js/{worker,web}.wasm
#
# The toolchains are installed at pinned versions under target/guest-toolchains/ (a venv for
# componentize-py, an npm prefix for componentize-js and jco), never globally, and only once.
# The worlds the guests target are examples/guest-wit/guests.wit, laid next to a copy of wit/ in
# target/guest-wit/ so that each toolchain reads wasmlet's own contract; the plugin targets the
# plugin-host example's own WIT, examples/plugins/wit.
#
# A language whose toolchain is missing (no python3 with venv, no node/npm) is skipped with the
# reason, and the script still exits 0; the e2e tests then skip that language too. Any other
# failure (an install or a build that fails) exits non-zero.
#
# Usage: scripts/build-guests.sh [python] [js]     (both by default)
set -euo pipefail
cd "$(dirname "$0")/.."

COMPONENTIZE_PY_VERSION=0.25.1
COMPONENTIZE_JS_VERSION=0.23.0
JCO_VERSION=1.35.0

root=$PWD
tools="$root/target/guest-toolchains"
wit="$root/target/guest-wit"
languages=("$@")
[ ${#languages[@]} -gt 0 ] || languages=(python js)

# The WIT the guests are built against: the guest worlds, with wasmlet's contract as a dependency.
lay_out_wit() {
    rm -rf "$wit"
    mkdir -p "$wit/deps/lifecycle"
    cp examples/guest-wit/guests.wit "$wit/"
    cp -R wit/deps/. "$wit/deps/"
    cp wit/lifecycle.wit "$wit/deps/lifecycle/"
}

build_python() {
    if ! command -v python3 >/dev/null; then
        echo "build-guests: skipped Python: python3 is not installed"
        return
    fi
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        echo "build-guests: skipped Python: python3 has no venv/ensurepip module (Debian: apt-get install python3-venv)"
        return
    fi
    local venv="$tools/py-$COMPONENTIZE_PY_VERSION"
    if [ ! -x "$venv/bin/componentize-py" ]; then
        echo "build-guests: installing componentize-py $COMPONENTIZE_PY_VERSION into $venv"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check \
            "componentize-py==$COMPONENTIZE_PY_VERSION"
    fi
    echo "build-guests: $("$venv/bin/componentize-py" --version)"
    mkdir -p target/components-py
    local app
    for app in worker web; do
        echo "build-guests: python $app -> target/components-py/$app.wasm"
        "$venv/bin/componentize-py" --quiet -d "$wit" -w "$app" componentize \
            -p "examples/python/$app" app -o "target/components-py/$app.wasm"
    done
    echo "build-guests: python plugin -> target/components-py/plugin.wasm"
    "$venv/bin/componentize-py" --quiet -d examples/plugins/wit -w plugin componentize \
        -p examples/python/plugin app -o target/components-py/plugin.wasm
}

build_js() {
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        echo "build-guests: skipped JavaScript: node and npm are not both installed"
        return
    fi
    local prefix="$tools/js-$COMPONENTIZE_JS_VERSION-jco-$JCO_VERSION"
    local bin="$prefix/node_modules/.bin"
    if [ ! -x "$bin/componentize-js" ] || [ ! -x "$bin/jco" ]; then
        echo "build-guests: installing componentize-js $COMPONENTIZE_JS_VERSION and jco $JCO_VERSION into $prefix"
        rm -rf "$prefix"
        mkdir -p "$prefix"
        npm install --prefix "$prefix" --no-audit --no-fund --save-exact --loglevel=error \
            "@bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION" \
            "@bytecodealliance/jco@$JCO_VERSION"
    fi
    echo "build-guests: componentize-js $("$bin/componentize-js" --version), jco $("$bin/jco" --version)"
    mkdir -p target/components-js
    local app
    for app in worker web; do
        echo "build-guests: js $app -> target/components-js/$app.wasm"
        # componentize-js itself: `jco componentize` cannot read a WIT directory here (its
        # WebAssembly wasm-tools sees no files), while componentize-js reads it natively.
        "$bin/componentize-js" "examples/js/$app/app.js" --wit "$wit" --world-name "$app" \
            -o "target/components-js/$app.wasm"
        # jco reads the component back: it must export the lifecycle hooks it was built for.
        "$bin/jco" wit "target/components-js/$app.wasm" | grep -q "export wasmlet:lifecycle/hooks@0.1.0;" || {
            echo "build-guests: target/components-js/$app.wasm does not export wasmlet:lifecycle/hooks" >&2
            exit 1
        }
    done
}

lay_out_wit
for language in "${languages[@]}"; do
    case "$language" in
        python) build_python ;;
        js) build_js ;;
        *) echo "build-guests: unknown language $language (python, js)" >&2; exit 2 ;;
    esac
done
