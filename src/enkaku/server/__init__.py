"""The support company's server: API, agent rendezvous, opaque relay, records."""
