"""Test configuration: Qt renders offscreen; the tests' helpers (gradcheck, the kernel emulator)
are importable. GateScope itself is imported as installed (``gatescope.compute`` and so on)."""
import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("GATESCOPE_DEVICE", "cpu")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
