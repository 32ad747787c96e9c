"""Tests for fsdp.wire: views, builders and checksums, checked against Scapy."""
