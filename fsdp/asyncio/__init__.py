"""``fsdp.asyncio``: run asyncio programs on fsdp.

    import fsdp.asyncio

    async def main():
        reader, writer = await asyncio.open_connection("10.0.0.1", 8080)
        ...

    fsdp.asyncio.run(main())                      # like asyncio.run, on fsdp's default stack
    fsdp.asyncio.run(main(), stack=my_stack)      # or on a given fsdp.Stack
    asyncio.set_event_loop_policy(fsdp.asyncio.EventLoopPolicy())   # or as the policy

The loop is the stdlib's selector event loop over :class:`fsdp.selectors.FsdpSelector`; IPv4
TCP to non-loopback addresses goes to fsdp, the rest stays on the kernel (see
:mod:`fsdp.asyncio.loop`).
"""

from fsdp.asyncio.loop import FsdpEventLoop, FsdpEventLoopPolicy, new_event_loop, run

EventLoop = FsdpEventLoop
EventLoopPolicy = FsdpEventLoopPolicy

__all__ = ["EventLoop", "EventLoopPolicy", "FsdpEventLoop", "FsdpEventLoopPolicy",
           "new_event_loop", "run"]
