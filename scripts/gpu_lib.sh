# Shared by scripts/gpu_check.sh and scripts/gpu_train.sh (sourced): what both do first on a GPU
# machine that has Python 3.12 and torch + CUDA but no network.

# install_wheels PY WHEELS: the carried wheels, then mqc-edge itself (-e .), all --no-deps and
# --no-index; fails if torch's version changed (it must never be installed or upgraded there).
install_wheels() {
    local py=$1 wheels=$2 before after
    before=$($py -c 'import torch; print(torch.__version__)')
    $py -m pip install -q --no-index --no-deps --find-links "$wheels" "$wheels"/*.whl &&
        $py -m pip install -q --no-index --no-deps --no-build-isolation -e . || return 1
    after=$($py -c 'import torch; print(torch.__version__)')
    [ "$before" = "$after" ] || { echo "torch changed: $before -> $after"; return 1; }
    echo "torch $after untouched; mqc-edge installed"
}
