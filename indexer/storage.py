"""How vectors are stored, and what that does to their scores: uint8 codes and their similarity.

Qdrant's ``uint8`` datatype stores each component as a byte 0..255 and expects vectors already in that
range (it casts a float to a byte by truncating and saturating, queries too). BGE-M3's vectors are unit
vectors with components in [-1, 1], so they are mapped here to ``u = round(C + S*x)`` with C = S = 127.5:
the whole range, nothing ever clipped, a step of 1/127.5 in x.

Why Euclidean distance: the mapping adds the same offset C to every component, and a cosine or a dot
product of offset vectors does not rank like the cosine of the originals (the offset adds a term that
depends on the sum of each vector's components). A difference of two codes does not see the offset:
``|u_q - u_d|^2 = S^2 |x_q - x_d|^2 = 2 S^2 (1 - cos)`` for unit vectors, so ranking by Euclidean
distance is ranking by cosine, and MAX_SIM over Euclidean distances (Qdrant sums each query vector's best
*negative squared* distance and reports the square root of the sum's magnitude) ranks as MAX_SIM over
cosines. The cosine is recovered from a distance d as ``1 - (d^2 - n/6) / (2 S^2)``: n/6 is the expected
squared length of the difference of two rounding errors (uniform in [-0.5, 0.5] on each of n components),
removed so the recovered cosine is unbiased; what remains is noise of about 1/(S*sqrt(6)) = 0.003 (times
sqrt(2 - 2cos)) per vector pair, independent of the dimension.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

UINT8_CENTER = 127.5
UINT8_SCALE = 127.5

BYTES_PER_COMPONENT = {"float32": 4, "float16": 2, "uint8": 1}


def distance_for(datatype: str) -> str:
    """The distance a vector of unit components is stored with: cosine, or Euclidean for uint8 codes."""
    return "euclid" if datatype == "uint8" else "cosine"


def to_uint8(vectors: np.ndarray) -> np.ndarray:
    """Unit-vector components (any shape) as uint8 codes ``round(127.5 + 127.5*x)``, clipped to 0..255."""
    codes = np.rint(UINT8_CENTER + UINT8_SCALE * np.asarray(vectors, dtype=np.float32))
    return np.clip(codes, 0, 255).astype(np.uint8)


def from_uint8(codes: np.ndarray) -> np.ndarray:
    """The components uint8 codes stand for (what a stored vector reads back as)."""
    return (np.asarray(codes, dtype=np.float32) - UINT8_CENTER) / UINT8_SCALE


@dataclass(frozen=True, slots=True)
class EuclidCodes:
    """Scores of uint8 codes of ``dim``-d unit vectors, Euclidean distance, as cosine similarities.

    ``n`` is 1 for a dense vector and the number of query vectors for a multivector (MAX_SIM: the engine
    reports ``sqrt(sum_i min_j d_ij^2)``; the similarity is the sum of the n best cosines).
    """

    dim: int

    @property
    def per_pair(self) -> float:
        """1 + the rounding bias removed from each vector pair's cosine."""
        return 1.0 + self.dim / 6 / (2 * UINT8_SCALE**2)

    @property
    def per_squared_distance(self) -> float:
        return 1.0 / (2 * UINT8_SCALE**2)

    def similarity(self, score: float, n: int = 1) -> float:
        """The cosine (n = 1) or sum of n best cosines that an engine score (a distance) stands for."""
        return n * self.per_pair - score * score * self.per_squared_distance

    def max_distance(self, similarity: float, n: int = 1) -> float:
        """The engine score (a distance) at and below which the similarity is at least ``similarity``."""
        squared = (n * self.per_pair - similarity) / self.per_squared_distance
        return float(np.sqrt(squared)) if squared > 0 else 0.0
