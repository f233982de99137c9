"""The errors an engine raises for a request it cannot serve, whatever the engine (in process or
on a server). Their messages are for the user; the tasks turn each into the user's error. Any
other exception from an engine (a ValueError included) is a bug and is reported as one."""


class EngineError(Exception):
    """A request the engine cannot serve; the message says why, for the user."""


class EngineUnavailable(EngineError):
    """The engine cannot serve at all now: its server is down, overloaded, or refused the key."""


class RequestRefused(EngineError):
    """This request cannot be served as asked: an empty or too long prompt, a continuation
    without tokens, a schema the grammar compiler refuses, a feature the server lacks."""


class OutOfMemory(EngineError):
    """The device ran out of memory for this request (the engine stays usable)."""


def first_line(exc: BaseException) -> str:
    """An exception's message in one short line (its type's name when it has none), for a log or
    a message that says what failed without a traceback."""
    text = str(exc).strip()
    if isinstance(exc, KeyError):  # its text is only the key
        return f"missing key {text}"
    return text.splitlines()[0].rstrip(".")[:300] if text else type(exc).__name__
