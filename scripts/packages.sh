# Sourced by the set-up and CI scripts: the Debian packages the project needs (VQ_PACKAGES), and
# ensure_packages PACKAGE... which installs (apt-get, without recommended packages) those not
# installed yet and says how long that took.

# Compilers and build tools; the libraries (libdnnl-dev's CMake config needs the OpenCL headers
# and loader of ocl-icd-opencl-dev, which it only recommends); Open MPI for data-parallel
# training; the default data set; LAPACK for rFID; Python for the interop tests, the PyTorch
# comparison and the checks against pytorch-fid (which needs scipy and torchvision).
VQ_PACKAGES=(
  build-essential cmake ninja-build ccache
  libfmt-dev libgtest-dev libbenchmark-dev nlohmann-json3-dev
  libdnnl-dev ocl-icd-opencl-dev zlib1g-dev libstb-dev liblapack-dev
  libopenmpi-dev openmpi-bin
  dataset-fashion-mnist
  python3 python3-venv python3-numpy python3-torch python3-scipy python3-torchvision
)

ensure_packages() {
  local missing=() p start=$SECONDS
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then
    echo "== packages: all $# present"
    return
  fi
  echo "== packages: installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  echo "== packages: installed ${#missing[@]} in $((SECONDS - start)) s"
}
