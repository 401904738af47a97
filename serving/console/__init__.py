"""The CSM console: server-rendered pages mounted in the BentoML service under `/console`, and its database."""
