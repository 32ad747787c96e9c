"""Per-core packet pools: see :mod:`fsdp.pool.pool`."""

from fsdp.pool.pool import (  # noqa: F401
    FRAME_F_RX_CSUM_BAD,
    FRAME_F_RX_CSUM_OK,
    FRAME_F_TX_CSUM,
    FRAME_SIZE,
    HEADROOM,
    MAX_FRAME_LEN,
    Pool,
    frame_alloc,
    frame_alloc_burst,
    frame_copy,
    frame_free,
    frame_free_burst,
    frame_free_chain,
    frame_ref,
    pool_audit,
    pool_create,
    pool_n_free,
    pool_owned_ids,
)
