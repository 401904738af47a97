"""tierwise: thin glue (CLI and settings) over features, training and serving.

OpenMP threads that spin while waiting made LightGBM up to 10x slower on busy 2-core
machines; the passive policy must be set before LightGBM is first imported, hence here.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
