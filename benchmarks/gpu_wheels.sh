#!/usr/bin/env bash
# The wheels that benchmarks/gpu_checks.sh installs on a GPU machine without network: the packages
# lpi-claims imports that the GPU image (Python 3.12, its own torch and transformers) lacks, at the
# versions this project is tested with. Run where PyPI is reachable; carry .whl/ to the GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 submitit==1.5.4 plotly==7.1.0 filelock==4.3.2 scipy==1.17.1
du -sh .whl
