# Sourced by scripts/test, scripts/demo and scripts/lock: one way to make the project's venv.
# Its packages come from requirements-lock.txt, so every fresh machine gets the versions the suite last
# passed with; scripts/lock moves them forward. The lock also pins the build backend (setuptools)
# that builds backbeat's own editable install.

# uv resolves and installs; pinned here so the installer itself does not change under the lock.
UV_VERSION=0.13.9

ensure_venv() {
  [ -x .venv/bin/python ] || python3 -m venv .venv
  if ! .venv/bin/uv --version 2>/dev/null | grep -qx "uv $UV_VERSION.*"; then
    .venv/bin/python -m pip install -q --disable-pip-version-check "uv==$UV_VERSION"
  fi
}

uv_pip() {
  .venv/bin/uv pip "$1" -q --python .venv/bin/python --build-constraints requirements-lock.txt "${@:2}"
}

# Exactly the lock's packages (any others removed), then backbeat itself, editable: the suite's venv.
sync_locked() {
  uv_pip sync requirements-lock.txt
  uv_pip install --no-deps -e .
}

# backbeat and its own dependencies at the lock's versions: enough for the demo.
install_locked_runtime() {
  uv_pip install --constraints requirements-lock.txt -e .
}

# A Python of the given minor version (3.12): pyenv's newest build of it, else one on PATH (not a pyenv
# shim, which may name a version that is not installed); none prints nothing.
find_python() {
  local found
  found=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$1".*/bin/"python$1" 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$found" ]; then
    found=$(type -ap "python$1" 2>/dev/null | grep -v /shims/ | head -1 || true)
  fi
  echo "$found"
}

# The wheel and sdist in dist/, built without isolation by the lock's setuptools, checked as PyPI will.
build_dist() {
  rm -rf dist
  .venv/bin/python -m build --no-isolation -o dist . >.venv/build.log 2>&1 || { cat .venv/build.log; return 1; }
  .venv/bin/twine check --strict dist/*
}

# A fresh venv at $1 made by the Python $2 with the packages of lock $3, and backbeat installed from the
# wheel in dist/ (not editable): tests run there import the package as users will get it.
wheel_venv() {
  local dir=$1 python=$2 lock=$3
  "$python" -m venv --clear --without-pip "$dir"
  .venv/bin/uv pip sync -q --python "$dir/bin/python" --build-constraints requirements-lock.txt "$lock"
  .venv/bin/uv pip install -q --python "$dir/bin/python" --no-deps dist/backbeat-*.whl
}
