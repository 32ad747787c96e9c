"""One compiled copy of the table kernels the engine calls from many places.

``tcb_set_state``, ``tcb_is_allocated`` and the timer wheel's ``timer_*`` are
``inline="always"`` (fast, refcount-free hot paths); every call site of such a function is a
full copy of its IR, and each costs compile time out of proportion to its size because of the
~100-array tables it takes.  The engine calls them through these small kernels instead, so each
is inlined once.  Beside them, the unit conversions of cold-row fields that the timers read
(``user_timeout_us``, ``keepalive_idle_us``), so each is written once.
"""

import numpy as np

from fsdp.core.timerwheel import (
    timer_arm,
    timer_cancel,
    timer_cancel_all,
    timer_expires,
    timer_pending,
)
from fsdp.tcp.kernel import kernel, kernel_inline
from fsdp.tcp.tcb import tcb_is_allocated, tcb_set_state


@kernel
def set_state(core, cid, state):
    """``tcb_set_state`` on the core's table: 0 or ERR_TCB_*."""
    return tcb_set_state(core.tcb, cid, state)


@kernel
def is_alloc(core, cid):
    return tcb_is_allocated(core.tcb, cid)


@kernel
def arm(core, cid, kind, when):
    """(Re-)arm timer ``kind`` of ``cid`` at ``when`` µs."""
    return timer_arm(core.timers, cid, kind, when)


@kernel
def disarm(core, cid, kind):
    return timer_cancel(core.timers, cid, kind)


@kernel
def disarm_all(core, cid):
    return timer_cancel_all(core.timers, cid)


@kernel
def armed(core, cid, kind):
    return timer_pending(core.timers, cid, kind)


@kernel
def expires(core, cid, kind):
    return timer_expires(core.timers, cid, kind)


@kernel_inline
def user_timeout_us(core, cid):
    """TCP_USER_TIMEOUT in µs (kept in ms in the cold row, as the option gives it), 0 = none."""
    return np.int64(core.tcb.cold.user_timeout_ms[cid]) * 1000


@kernel_inline
def keepalive_idle_us(core, cid):
    """TCP_KEEPIDLE in µs (kept in ms in the cold row: 32767 s at most)."""
    return np.int64(core.tcb.cold.ka_idle_ms[cid]) * 1000
