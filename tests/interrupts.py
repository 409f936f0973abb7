"""Ctrl-C and SIGTERM stop the whole test session.

Lightning turns a KeyboardInterrupt inside `Trainer.fit` into `sys.exit(1)` (and then ignores
SIGINT), and merely notes a SIGTERM: either way the running test fails and pytest goes on. So
both signals are recorded here before they are raised, and the session stops after the test
phase in which one arrived, whatever that phase made of it."""

from __future__ import annotations

import signal

import pytest

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
