"""One builder per method: config -> ``Method``. The dict at the bottom is the only registry."""

import ml_collections

from ssl_jax import build
from ssl_jax.methods.base import Method
from ssl_jax.methods.networks import SiameseNet
from ssl_jax.methods.simclr import SimCLR


def simclr(c: ml_collections.ConfigDict, num_train_examples: int) -> Method:
    del num_train_examples  # no schedule inside SimCLR
    net = SiameseNet(encoder=build.encoder(c), projector=build.projector(c))
    return SimCLR(view_fn=build.view_fn(c), net=net, temperature=c.loss.temperature)


BUILDERS = {
    "simclr": simclr,
}
