"""The dialogs the window's tests give it: nothing ever waits on a modal window.

Messages are recorded for the asserts; questions are answered from attributes a test may set
(by default the safe answer: discard, stop, no file chosen, no recovery).
"""
from __future__ import annotations

from pathlib import Path


class FakeDialogs:
    """Records ``errors`` and ``infos`` as (title, text), ``exceptions`` as (summary, details),
    ``questions`` asked and ``help_pages`` shown; answers from its attributes."""

    def __init__(self):
        self.errors, self.infos, self.exceptions, self.questions, self.help_pages = [], [], [], [], []
        self.save_answer = "discard"
        self.stop_answer = True
        self.open_from: str | None = None
        self.save_to: str | None = None
        self.export_to: str | None = None
        self.recover: Path | None = None

    def error(self, title, text):
        self.errors.append((title, text))

    def info(self, title, text):
        self.infos.append((title, text))

    def ask_save(self, text):
        self.questions.append(text)
        return self.save_answer

    def ask_stop_training(self, text):
        self.questions.append(text)
        return self.stop_answer

    def open_path(self):
        return self.open_from

    def save_path(self, suggested):
        return self.save_to

    def export_path(self, suggested):
        return self.export_to

    def offer_recovery(self, paths):
        self.questions.append([str(p) for p in paths])
        return self.recover

    def show_help(self, title, html):
        self.help_pages.append((title, html))

    def show_exception(self, summary, details):
        self.exceptions.append((summary, details))
