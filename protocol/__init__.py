"""kpy.protocol: the Kafka wire protocol, sans-IO.

Bytes in, requests out; responses in, bytes out.
"""
