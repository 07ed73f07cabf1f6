"""The 8-device mesh the distributed loss tests run on."""

import jax
import numpy as np
import pytest
from jax.sharding import Mesh

from tests.losses.helpers import AXIS


@pytest.fixture(scope="session")
def mesh(n_devices):
    return Mesh(np.array(jax.devices()), (AXIS,))
