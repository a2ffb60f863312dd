"""``python -m livetalk.data``: print the paths of the bundled files (for shell commands)."""

from livetalk.data import DEMO_PHRASES, DEMO_WAV

print(f"DEMO_WAV={DEMO_WAV}")
print(f"DEMO_PHRASES={DEMO_PHRASES}")
