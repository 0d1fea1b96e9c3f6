"""kpy.protocol: the Kafka wire protocol, sans-IO (bytes in, requests out; responses in, bytes out)."""
