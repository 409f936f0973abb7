"""Ctrl-C and SIGTERM stop the whole test session.

Lightning turns a KeyboardInterrupt inside `Trainer.fit` into `sys.exit(1)` (and then ignores
SIGINT), and merely notes a SIGTERM: either way the running test fails and pytest goes on. So
both signals are recorded here before they are raised, and the session stops after the test
phase in which one arrived, whatever that phase made of it."""

from __future__ import annotations

import signal
import types

import pytest
from _pytest._code import Traceback

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[signal.Signals] = []


def _record_and_interrupt(signum: int, _frame) -> None:
    _received.append(signal.Signals(signum))
    raise KeyboardInterrupt(signal.Signals(signum).name)


def pytest_sessionstart(session: pytest.Session) -> None:
    for signum in STOP_SIGNALS:
        signal.signal(signum, _record_and_interrupt)


def _stop_if_interrupted() -> None:
    if _received:
        pytest.exit(
            f"{_received[0].name} received: the test session stops",
            returncode=pytest.ExitCode.INTERRUPTED,
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    try:
        return (yield)
    finally:
        _stop_if_interrupted()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    try:
        return (yield)
    finally:
        _stop_if_interrupted()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    try:
        return (yield)
    finally:
        _stop_if_interrupted()


@pytest.hookimpl(tryfirst=True)
def pytest_keyboard_interrupt(excinfo: pytest.ExceptionInfo[BaseException]) -> None:
    """A signal that lands on some bytecode leaves, on CPython 3.11, a traceback entry whose
    `tb_lineno` is None; pytest's report of the interrupt then fails on it (`None - 1`) and the
    session ends in a traceback with exit status 1 instead of INTERRUPTED. Such entries get
    their frame's current line before pytest reports them."""
    exception: BaseException | None = excinfo.value
    seen = set()
    while exception is not None and id(exception) not in seen:
        seen.add(id(exception))
        exception.__traceback__ = _with_line_numbers(exception.__traceback__)
        exception = exception.__cause__ or exception.__context__
    excinfo.traceback = Traceback(_with_line_numbers(excinfo.tb))


def _with_line_numbers(tb: types.TracebackType | None) -> types.TracebackType | None:
    entries = []
    while tb is not None:
        entries.append(tb)
        tb = tb.tb_next
    if all(entry.tb_lineno is not None for entry in entries):
        return entries[0] if entries else None
    rebuilt = None
    for entry in reversed(entries):
        line = entry.tb_lineno
        if line is None:
            line = entry.tb_frame.f_lineno or entry.tb_frame.f_code.co_firstlineno
        rebuilt = types.TracebackType(rebuilt, entry.tb_frame, entry.tb_lasti, line)
    return rebuilt
