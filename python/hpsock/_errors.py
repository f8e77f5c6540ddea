"""hpsock.Error and the library's error codes.

Errors are negative ints: library errors (``EINVAL`` ... ``EFILE`` below,
``HPS_*`` in hpsock.h) or system errors (``-errno``, e.g. ``-111`` is
``ECONNREFUSED``). ``err_name`` and ``strerror`` describe both kinds.
"""

from . import _hpsock_swig as _c

__all__ = ["Error", "err_name", "strerror",
           "EINVAL", "EHANDLE", "ENOTFOUND", "ESTATE", "EROLE", "EMODEL",
           "ENOMEM", "ESENDQ", "ELIMIT", "EINLOOP", "EHANDLER", "EADDR",
           "ESTOPPING", "ETIMEDOUT", "EAGAIN", "EPACKFLAG", "EPACKSIZE",
           "EPACKEMPTY", "EPULLFULL", "ESILENCE", "EFILE", "ECLOSETIMEOUT", "ETLS",
           "ETLSVERIFY", "ETLSCONFIG", "ETLSEOF", "ETLSNOTTLS", "ETLSALERT",
           "ENOTLS", "EDGRAMSIZE", "EUDPIDLE"]

EINVAL: int = _c.HPS_EINVAL
EHANDLE: int = _c.HPS_EHANDLE
ENOTFOUND: int = _c.HPS_ENOTFOUND
ESTATE: int = _c.HPS_ESTATE
EROLE: int = _c.HPS_EROLE
EMODEL: int = _c.HPS_EMODEL
ENOMEM: int = _c.HPS_ENOMEM
ESENDQ: int = _c.HPS_ESENDQ
ELIMIT: int = _c.HPS_ELIMIT
EINLOOP: int = _c.HPS_EINLOOP
EHANDLER: int = _c.HPS_EHANDLER
EADDR: int = _c.HPS_EADDR
ESTOPPING: int = _c.HPS_ESTOPPING
ETIMEDOUT: int = _c.HPS_ETIMEDOUT
EAGAIN: int = _c.HPS_EAGAIN
EPACKFLAG: int = _c.HPS_EPACKFLAG
EPACKSIZE: int = _c.HPS_EPACKSIZE
EPACKEMPTY: int = _c.HPS_EPACKEMPTY
EPULLFULL: int = _c.HPS_EPULLFULL
ESILENCE: int = _c.HPS_ESILENCE
EFILE: int = _c.HPS_EFILE
ECLOSETIMEOUT: int = _c.HPS_ECLOSETIMEOUT
"""on_close: a graceful close could not flush within ``close_timeout`` and
was closed by force."""
EDGRAMSIZE: int = _c.HPS_EDGRAMSIZE
EUDPIDLE: int = _c.HPS_EUDPIDLE
ETLS: int = _c.HPS_ETLS
ETLSVERIFY: int = _c.HPS_ETLSVERIFY
ETLSCONFIG: int = _c.HPS_ETLSCONFIG
ETLSEOF: int = _c.HPS_ETLSEOF
ETLSNOTTLS: int = _c.HPS_ETLSNOTTLS
ETLSALERT: int = _c.HPS_ETLSALERT
ENOTLS: int = _c.HPS_ENOTLS


def err_name(code: int) -> str:
    """The symbolic name of an error code, e.g. ``"HPS_ENOTFOUND"`` or
    ``"ECONNRESET"``; ``0`` gives the library's name for success."""
    return _c.hps_err_name(code)


def strerror(code: int) -> str:
    """A human-readable message for an error code."""
    return _c.hps_strerror(code)


class Error(Exception):
    """An hpsock call failed.

    Attributes:
        code: the negative error code (compare with ``hpsock.ENOTFOUND``
            etc., or with ``-errno`` for system errors).
        name: its symbolic name, e.g. ``"HPS_ENOTFOUND"``.
        message: its description, e.g. ``"connection not found"``.
    """

    code: int
    name: str
    message: str

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code
        self.name = _c.hps_err_name(code)
        self.message = _c.hps_strerror(code)

    def __str__(self) -> str:
        return f"{self.name}: {self.message}"

    def __repr__(self) -> str:
        return f"hpsock.Error({self.code}, {self.name!r})"


# Every negative result of the compiled module raises this class.
_c.hpsb_set_error_class(Error)
