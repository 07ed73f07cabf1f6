"""The network shape most methods share: encoder -> projector -> (predictor)."""

import flax.linen as nn
import jax


class SiameseNet(nn.Module):
    """Backbone, projection head and optional prediction head applied to one batch.

    Returns ``(h, z, p)``: backbone features, projections and predictions (``p is z`` when
    there is no predictor, ``z is h`` when there is no projector). A target network is the
    same module built with ``predictor=None`` and applied to the online ``params`` subset.

    Attributes:
      encoder: the backbone, ``(x, *, train) -> [B, F]``.
      projector: the projection head ``(h, *, train) -> z``, or None.
      predictor: the prediction head ``(z, *, train) -> p``, or None.
    """

    encoder: nn.Module
    projector: nn.Module | None = None
    predictor: nn.Module | None = None

    def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array, jax.Array]:
        h = self.encoder(x, train=train)
        z = self.projector(h, train=train) if self.projector is not None else h
        p = self.predictor(z, train=train) if self.predictor is not None else z
        return h, z, p

    def features(self, x: jax.Array) -> jax.Array:
        """Eval-mode backbone features, for kNN / linear probe / downstream use."""
        return self.encoder(x, train=False)
