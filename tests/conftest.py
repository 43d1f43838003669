import os

import pytest
import torch

# Keep per-test CPU use predictable on a 2-core machine (pytest-xdist runs 2 workers).
torch.set_num_threads(int(os.environ.get("SDEFLOW_TEST_THREADS", "1")))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
