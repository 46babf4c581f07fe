"""ChunkPipe behaves exactly as paramiko's BufferedPipe, for any sequence of feeds and reads."""

import threading

from hypothesis import given, settings
from hypothesis import strategies as st
from paramiko.buffered_pipe import BufferedPipe, PipeTimeout

from daemon.dropzone.channel_buffer import ChunkPipe

steps = st.lists(
    st.one_of(
        st.tuples(st.just("feed"), st.binary(max_size=300)),
        st.tuples(st.just("read"), st.integers(min_value=1, max_value=700)),
        st.tuples(st.just("empty"), st.none()),
        st.tuples(st.just("len"), st.none()),
        st.tuples(st.just("ready"), st.none()),
    ),
    max_size=60,
)


def apply(pipe, operations) -> list:
    event = threading.Event()
    pipe.set_event(event)
    seen = []
    for operation, value in operations:
        if operation == "feed":
            pipe.feed(value)
        elif operation == "read":
            try:
                seen.append(pipe.read(value, timeout=0.0))
            except PipeTimeout:
                seen.append("timeout")
        elif operation == "empty":
            seen.append(pipe.empty())
        elif operation == "len":
            seen.append(len(pipe))
        else:
            seen.append(pipe.read_ready())
        seen.append(event.is_set())
    pipe.close()
    seen.append(pipe.read(10_000))
    seen.append(pipe.read(1))
    return seen


@settings(max_examples=1500, deadline=None)
@given(steps)
def test_any_sequence_of_feeds_and_reads_matches_paramiko(operations):
    assert apply(ChunkPipe(), operations) == apply(BufferedPipe(), operations)


def test_a_reader_waiting_for_data_wakes_on_feed_and_on_close():
    pipe = ChunkPipe()
    got = []
    reader = threading.Thread(target=lambda: got.extend([pipe.read(5, timeout=5), pipe.read(5, timeout=5)]))
    reader.start()
    pipe.feed(b"abc")
    pipe.close()
    reader.join(5)
    assert got == [b"abc", b""]
