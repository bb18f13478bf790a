"""Random damage to a frame's bytes, for the decoding property tests."""

from __future__ import annotations

from hypothesis import strategies as st


def mutate(payload: bytes, data: st.DataObject, *, max_steps: int = 4) -> bytes:
    """``payload`` after 1..max_steps random bit flips, byte changes, insertions and cuts."""
    damaged = bytearray(payload)
    for _ in range(data.draw(st.integers(1, max_steps))):
        position = data.draw(st.integers(0, len(damaged)))
        action = data.draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if action in ("flip", "set") and position < len(damaged):
            if action == "flip":
                damaged[position] ^= 1 << data.draw(st.integers(0, 7))
            else:
                damaged[position] = data.draw(st.integers(0, 255))
        elif action == "insert":
            damaged[position:position] = data.draw(st.binary(min_size=1, max_size=3))
        elif action == "delete":
            del damaged[position : position + data.draw(st.integers(1, 3))]
        elif action == "truncate":
            del damaged[position:]
    return bytes(damaged)
