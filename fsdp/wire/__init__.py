"""Byte-level views and builders: Ethernet, ARP, IPv4, ICMP, TCP (+options), checksums.

Every protocol module has a header diagram, offset constants, a ``*_check`` that validates lengths
once and returns 0 or a negative ERR_* code, tiny inline accessors over ``(buf, off)``, and a
builder.  Pure functions over numpy uint8 buffers, usable jitted and interpreted.
"""
