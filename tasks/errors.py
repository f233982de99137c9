"""Errors whose message is meant for the user: the CLI prints it, the UI shows it as a toast."""


class UserError(Exception):
    """Something the user can fix or needs to know; the message says what and how."""


class DocumentError(UserError):
    """The file cannot be read as a document (unsupported, corrupt, encrypted, empty...)."""


class BudgetError(UserError):
    """The request does not fit in the context budget."""


class TooLongToRun(BudgetError):
    """The work would take longer than a request may run (the time limit)."""


class ModelUnavailable(UserError):
    """No model is loaded, so generation cannot run (the document tools still work)."""


class InvalidRequest(UserError):
    """An option or argument is missing or out of range."""


class CapacityError(UserError):
    """The server cannot serve the request as asked (the GPU ran out of memory for it)."""
