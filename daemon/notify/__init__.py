"""Mail: run recaps, alerts and the digest, queued in the store and sent through [smtp]."""
