"""Incremental detokenization and stop strings, without a model."""

from model.textstream import IncrementalDecoder, StopStringFilter


def byte_decoder(ids):
    """A byte-level 'tokenizer': each id is one byte, decoded as UTF-8 with replacement."""
    return bytes(ids).decode("utf-8", errors="replace")


def test_multibyte_characters_are_held_until_complete():
    decoder = IncrementalDecoder(byte_decoder)
    deltas = [decoder.push(b) for b in "a日本".encode()] + [decoder.flush()]
    assert deltas[0] == "a"
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) == "a日本"


def test_invalid_bytes_do_not_stall_the_stream():
    decoder = IncrementalDecoder(byte_decoder)
    deltas = [decoder.push(b) for b in [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, ord("x")]]
    assert "".join(deltas) + decoder.flush() == "\ufffd" * 5 + "x"


def test_stop_string_cuts_and_is_never_emitted():
    stops = StopStringFilter(["\nQuestion:"])
    shown = [stops.push(part) for part in ["The answer", " is 42.\nQue", "stion: next"]]
    assert "".join(shown) == "The answer is 42."
    assert stops.stopped
    assert stops.push("more") == ""


def test_possible_stop_prefix_is_released_when_it_is_not_a_stop():
    stops = StopStringFilter(["\n\n\n"])
    assert stops.push("one\n\n") == "one"
    assert stops.push("two") == "\n\ntwo"
    assert not stops.stopped
    assert stops.push("\n") == ""
    assert stops.flush() == "\n"
