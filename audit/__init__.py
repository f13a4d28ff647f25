"""audit: is an image classifier right for the right reasons?"""

import os

# The pipeline interleaves small torch operations with numpy and image decoding. With OpenMP's
# default active waiting, torch's idle worker threads spin between operations and starve that
# work (measured: 2.5x slower on 2 cores). Passive waiting must be set before torch loads
# OpenMP; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
