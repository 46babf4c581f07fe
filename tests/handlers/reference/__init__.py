"""Row-at-a-time import kinds: the oracle the batched kinds are compared with."""
