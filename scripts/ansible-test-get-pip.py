"""Stand-in for the get-pip.py bootstrap that ansible-test downloads for its sanity venvs.

The official script comes from a host CI cannot reach; pip itself is on PyPI, which CI can
reach, so bootstrap with the interpreter's own ensurepip and then install the pinned pip.
"""

import subprocess
import sys

# get-pip.py options that `pip install` does not know.
GET_PIP_ONLY = {"--no-setuptools", "--no-wheel", "--no-pip"}

subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
raise SystemExit(subprocess.call([sys.executable, "-m", "pip", "install", "-q", *args]))
