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
